"""Writing evaluation results: JSON, a markdown table, and the score-versus-diversity plot."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path

from .harness import MethodResult, head_to_head


COLUMNS = [
    ("method", lambda r: r.name),
    ("judge score [95% CI]", lambda r: "{:+.3f} [{:+.2f}, {:+.2f}]".format(r.mean_score, *r.score_interval)),
    ("win rate vs baseline [95% CI]", lambda r: "{:.2f} [{:.2f}, {:.2f}]".format(r.win_rate, *r.win_rate_interval)),
    ("distinct-1", lambda r: f"{r.distinct_1:.3f}"),
    ("distinct-2", lambda r: f"{r.distinct_2:.3f}"),
    ("distinct-3", lambda r: f"{r.distinct_3:.3f}"),
    ("self-BLEU", lambda r: f"{r.self_bleu:.1f}"),
    ("words", lambda r: f"{r.mean_words:.1f}"),
    ("s/sample", lambda r: f"{r.seconds_per_sample:.2f}"),
]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def results_table(results: Sequence[MethodResult]) -> str:
    """A markdown table, one row per method."""
    return markdown_table([title for title, _ in COLUMNS], [[cell(r) for _, cell in COLUMNS] for r in results])


def head_to_head_table(pairs: Sequence[tuple[MethodResult, MethodResult]]) -> str:
    """A markdown table of paired win rates (same prompts and seeds), one row per (method, opponent)."""
    rows = []
    for result, opponent in pairs:
        rate, low, high = head_to_head(result, opponent)
        rows.append([result.name, opponent.name, f"{rate:.2f} [{low:.2f}, {high:.2f}]", str(len(result.scores))])
    return markdown_table(["method", "against", "win rate [95% CI]", "paired samples"], rows)


# The libraries whose versions move sampled tokens (bf16 kernels, sampling order): recorded beside every result.
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers")


def library_versions() -> dict[str, str]:
    """The installed version of each of `LIBRARIES` ("not installed" when absent): the same seed gives other sampled
    tokens under other versions, so a result is reproducible only beside them."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_results_json(results: Sequence[MethodResult], path: str | Path, **metadata) -> None:
    payload = {
        "metadata": metadata,
        "methods": [r.summary() | {"texts": r.texts, "scores": r.scores} for r in results],
    }
    Path(path).write_text(json.dumps(payload, indent=2))


def plot_score_vs_diversity(results: Sequence[MethodResult], path: str | Path, judge_name: str = "judge") -> None:
    """Judge score (with its 95% interval) against distinct-2, one labelled point per method; methods of one family
    at several betas are joined by a line. Labels of points that land close together are stacked, not overprinted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    families: dict[str, list[MethodResult]] = {}
    for result in results:
        if result.family and result.beta is not None:
            families.setdefault(result.family, []).append(result)
    for family, members in families.items():
        if len(members) > 1:
            members = sorted(members, key=lambda r: r.beta)
            axes.plot(
                [r.distinct_2 for r in members],
                [r.mean_score for r in members],
                "-",
                alpha=0.4,
                label=f"{family} (beta sweep)",
            )
    for result in results:
        low, high = result.score_interval
        axes.errorbar(
            result.distinct_2,
            result.mean_score,
            yerr=[[result.mean_score - low], [high - result.mean_score]],
            fmt="o",
            capsize=3,
            markersize=5,
        )
    x_span = max(max(r.distinct_2 for r in results) - min(r.distinct_2 for r in results), 1e-6)
    y_span = max(max(r.mean_score for r in results) - min(r.mean_score for r in results), 1e-6)
    placed: list[tuple[float, float]] = []
    for result in sorted(results, key=lambda r: -r.mean_score):
        x, y = (result.distinct_2 - min(r.distinct_2 for r in results)) / x_span, result.mean_score / y_span
        crowd = sum(abs(x - px) < 0.25 and abs(y - py) < 0.08 for px, py in placed)
        placed.append((x, y))
        axes.annotate(
            result.name,
            (result.distinct_2, result.mean_score),
            fontsize=8,
            textcoords="offset points",
            xytext=(6, 2 - 11 * crowd),
            arrowprops={"arrowstyle": "-", "alpha": 0.3} if crowd else None,
        )
    axes.set_xlabel("diversity (distinct-2, mean over seeds)")
    axes.set_ylabel(f"mean {judge_name} score (95% CI)")
    axes.set_title("Alignment quality versus diversity")
    axes.grid(alpha=0.3)
    if any(len(members) > 1 for members in families.values()):
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
