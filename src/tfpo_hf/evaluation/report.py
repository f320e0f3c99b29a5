"""Writing evaluation results: JSON, a markdown table, and the score-versus-diversity plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .harness import MethodResult

COLUMNS = [
    ("method", "name", "{}"),
    ("judge score", "mean_score", "{:+.3f}"),
    ("win rate", "win_rate", "{:.2f}"),
    ("distinct-1", "distinct_1", "{:.3f}"),
    ("distinct-2", "distinct_2", "{:.3f}"),
    ("distinct-3", "distinct_3", "{:.3f}"),
    ("self-BLEU", "self_bleu", "{:.1f}"),
    ("words", "mean_words", "{:.1f}"),
    ("s/sample", "seconds_per_sample", "{:.2f}"),
]


def results_table(results: Sequence[MethodResult]) -> str:
    """A markdown table, one row per method."""
    header = "| " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = [
        "| " + " | ".join(fmt.format(getattr(result, attribute)) for _, attribute, fmt in COLUMNS) + " |"
        for result in results
    ]
    return "\n".join([header, rule] + rows)


def write_results_json(results: Sequence[MethodResult], path: str | Path, **metadata) -> None:
    payload = {"metadata": metadata, "methods": [r.summary() | {"texts": r.texts, "scores": r.scores} for r in results]}
    Path(path).write_text(json.dumps(payload, indent=2))


def plot_score_vs_diversity(results: Sequence[MethodResult], path: str | Path, judge_name: str = "judge") -> None:
    """Judge score against distinct-2, one point per method; each family's beta sweep joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    families: dict[str, list[MethodResult]] = {}
    for result in results:
        if result.family and result.beta is not None:
            families.setdefault(result.family, []).append(result)
    for family, members in families.items():
        members = sorted(members, key=lambda r: r.beta)
        axes.plot([r.distinct_2 for r in members], [r.mean_score for r in members], "-o", label=f"{family} (beta sweep)")
        for member in members:
            axes.annotate(f"β={member.beta:g}", (member.distinct_2, member.mean_score), fontsize=8,
                          textcoords="offset points", xytext=(4, 4))
    for result in results:
        if result.family in families and result.beta is not None:
            continue
        axes.scatter(result.distinct_2, result.mean_score, marker="s")
        axes.annotate(result.name, (result.distinct_2, result.mean_score), fontsize=8,
                      textcoords="offset points", xytext=(4, -10))
    axes.set_xlabel("diversity (distinct-2)")
    axes.set_ylabel(f"mean {judge_name} score")
    axes.set_title("Alignment quality versus diversity")
    axes.grid(alpha=0.3)
    if families:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
