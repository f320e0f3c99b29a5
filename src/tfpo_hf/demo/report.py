"""The demo's outputs: `results.json`, the score-versus-diversity plot and `report.md` (held-out results with
intervals, head-to-head win rates, the targets, the validation sweep that chose the baselines' betas, training
summaries, timings, settings and sample generations)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evaluation import MethodResult, head_to_head, plot_score_vs_diversity, results_table, write_results_json
from ..evaluation.report import head_to_head_table, library_versions
from .doctors import CROSS_FAMILY, DPO, WEAK_DPO


if TYPE_CHECKING:
    from .arguments import DemoArguments
    from .context import DemoContext

# The demo's targets: LLMdoctor at its decoding beta against the unguided patient, head to head against DPO on the
# patient, and its diversity relative to the unguided patient (issue "LLMdoctor that steers"); in a weak-to-strong run
# head to head against DPO on the doctors' base and DPO-LoRA on the patient (issue "Weak-to-strong for real").
TARGET_WIN_RATE, TARGET_HEAD_TO_HEAD, TARGET_DIVERSITY_RATIO = 0.75, 0.55, 0.9
WEAK_TO_STRONG_HEAD_TO_HEAD = {WEAK_DPO: 0.60, DPO: 0.50}
TARGET_CROSS_FAMILY_WIN_RATE = (
    0.70  # the doctor of another family against the unguided patient (issue "cross-tokenizer")
)


@dataclass
class DemoOutcome:
    """What `run_demo` measured, for the outputs (the timings and training logs are in its `DemoContext`)."""

    results: list[MethodResult]
    validation_results: list[MethodResult]
    chosen_betas: dict[str, float]
    pair_stats: dict[str, Any]
    reward_stats: dict[str, Any]
    eval_prompts: list
    frontier_results: list[MethodResult] = field(default_factory=list)  # guided families at other betas


def write_outputs(context: DemoContext, outcome: DemoOutcome) -> Path:
    """`results.json`, the score-versus-diversity plot and `report.md`, then the table and the paths on stdout;
    returns the path of `report.md`."""
    output_dir = context.output_dir
    write_results_json(
        outcome.results,
        output_dir / "results.json",
        settings=asdict(context.args),
        pairs=outcome.pair_stats,
        rewards=outcome.reward_stats,
        chosen_betas=outcome.chosen_betas,
        validation=[r.summary() for r in outcome.validation_results],
        llmdoctor_beta_choice=llmdoctor_beta_choice(context),
        frontier=[r.summary() for r in outcome.frontier_results],
        versions=library_versions(),
    )
    plot_score_vs_diversity(
        outcome.results + outcome.frontier_results,
        output_dir / "reward_vs_diversity.png",
        judge_name=context.args.judge,
    )
    report = write_report(context, outcome)
    print(results_table(outcome.results))
    print(
        f"[demo] report: {report}\n[demo] plot: {output_dir / 'reward_vs_diversity.png'}\n"
        f"[demo] token rewards: {output_dir / 'token_rewards.html'}\n[demo] doctor: {output_dir / 'doctor'}"
    )
    return report


def llmdoctor_beta_choice(context: DemoContext) -> dict | None:
    """What chose LLMdoctor's beta on the validation prompts (`BetaChoice.to_dict()`), None when it was given."""
    return context.progress.recorded("llmdoctor_beta_choice") if context.progress else None


def target_lines(results: list[MethodResult], weak_to_strong: bool = False) -> list[str]:
    """One line per target, with the measured value, its interval and met / missed."""
    by_family = {r.family or r.name: r for r in results}
    doctor, unguided = by_family["LLMdoctor"], results[0]
    lines = [
        f"- Win rate against the unguided patient >= {TARGET_WIN_RATE}: {doctor.win_rate:.2f} "
        f"[{doctor.win_rate_interval[0]:.2f}, {doctor.win_rate_interval[1]:.2f}] "
        f"({'met' if doctor.win_rate >= TARGET_WIN_RATE else 'missed'})."
    ]
    head_to_head_targets = WEAK_TO_STRONG_HEAD_TO_HEAD if weak_to_strong else {DPO: TARGET_HEAD_TO_HEAD}
    for name, target in head_to_head_targets.items():
        if name not in by_family:
            continue
        rate, low, high = head_to_head(doctor, by_family[name])
        lines.append(
            f"- Head to head against {name} >= {target}: {rate:.2f} [{low:.2f}, {high:.2f}] "
            f"({'met' if rate >= target else 'missed'})."
        )
    ratio = doctor.distinct_2 / max(unguided.distinct_2, 1e-9)
    lines.append(
        f"- Distinct-2 at least {TARGET_DIVERSITY_RATIO}x the unguided patient's: {ratio:.2f}x "
        f"({doctor.distinct_2:.3f} vs {unguided.distinct_2:.3f}; "
        f"{'met' if ratio >= TARGET_DIVERSITY_RATIO else 'missed'})."
    )
    if CROSS_FAMILY in by_family:
        lines += cross_family_lines(by_family[CROSS_FAMILY], doctor, unguided)
    return lines


def cross_family_lines(cross: MethodResult, doctor: MethodResult, unguided: MethodResult) -> list[str]:
    """The doctor of another family: its win rate against the unguided patient (target), head to head against the
    LLMdoctor of the patient's family (same pairs and budget), and its diversity."""
    low, high = cross.win_rate_interval
    rate, h2h_low, h2h_high = head_to_head(cross, doctor)
    ratio = cross.distinct_2 / max(unguided.distinct_2, 1e-9)
    return [
        f"- {CROSS_FAMILY}: win rate against the unguided patient >= {TARGET_CROSS_FAMILY_WIN_RATE}: "
        f"{cross.win_rate:.2f} [{low:.2f}, {high:.2f}] "
        f"({'met' if cross.win_rate >= TARGET_CROSS_FAMILY_WIN_RATE else 'missed'}); head to head against "
        f"LLMdoctor (the patient's family): {rate:.2f} [{h2h_low:.2f}, {h2h_high:.2f}]; distinct-2 {ratio:.2f}x the "
        "unguided patient's."
    ]


def training_lines(training_logs: dict[str, list]) -> list[str]:
    """One line per trained method: its first and last logged loss, and its final train accuracy and margin."""
    lines = []
    for name, history in training_logs.items():
        losses = [entry["loss"] for entry in history if "loss" in entry]
        last = next((entry for entry in reversed(history) if "logps/accuracies" in entry), {})
        if not losses:
            continue
        summary = f"- {name}: loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} logs"
        if "rewards/accuracies" in last:
            summary += (
                f", final train implicit-reward accuracy {last['rewards/accuracies']:.2f}, margin "
                f"{last['rewards/margins']:+.2f} (log-ratio to the reference, summed)"
            )
        elif last:
            summary += f", final train accuracy {last['logps/accuracies']:.2f}, margin {last['logps/margins']:+.2f}"
        lines.append(summary + ".")
    return lines


def write_report(context: DemoContext, outcome: DemoOutcome) -> Path:
    """Write `report.md` in the report directory and return its path."""
    args, results = context.args, outcome.results
    doctor = next(r for r in results if r.family == "LLMdoctor")
    opponents = [r for r in results[1:] if r is not doctor]
    lines = [
        "# tfpo-hf demo report",
        "",
        *intro_lines(args, outcome),
        "",
        "## Held-out evaluation",
        "",
        results_table(results),
        "",
        "![score versus diversity](reward_vs_diversity.png)",
        "",
        "## Head to head",
        "",
        head_to_head_table([(doctor, opponent) for opponent in opponents]),
        "",
        "## Targets",
        "",
        *target_lines(results, args.weak_to_strong),
    ]
    choice = llmdoctor_beta_choice(context)
    if choice is not None:
        lines += ["", "## LLMdoctor's beta, chosen on the validation prompts", "", *beta_choice_lines(choice)]
    if outcome.frontier_results:
        lines += ["", "## Frontier: the guided methods at other betas", "", results_table(outcome.frontier_results)]
    if outcome.validation_results:
        lines += ["", "## Beta choice on the validation prompts", "", results_table(outcome.validation_results)]
    lines += ["", "## Data and training", "", *data_lines(args, outcome), *training_lines(context.training_logs)]
    lines += ["", "## Time (seconds)", "", *[f"- {k}: {v:.1f}" for k, v in context.timings.items()]]
    lines += ["", "## Settings", "", "```json", json.dumps(asdict(args), indent=2), "```"]
    lines += ["", "## Library versions (other versions sample other tokens from the same seed)", ""]
    lines += [f"- {name} {version}" for name, version in library_versions().items()]
    lines += ["", "## Samples (first seed)", "", *sample_lines(outcome)]
    path = context.output_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def beta_choice_lines(choice: dict) -> list[str]:
    """The rule that chose LLMdoctor's beta and what it measured per candidate."""
    lines = [f"Rule: {choice['rule']}. Unguided distinct-2 {choice['unguided_distinct_2']:.3f}.", ""]
    lines += ["| beta | distinct-2 | judge score | admissible |", "|---|---|---|---|"]
    for row in choice["table"]:
        score = "" if row["mean_score"] is None else f"{row['mean_score']:+.3f}"
        lines.append(
            f"| {row['beta']:g} | {row['distinct_2']:.3f} | {score} | {'yes' if row['admissible'] else 'no'} |"
        )
    return lines


def models_line(args: DemoArguments) -> str:
    """Which models played which part."""
    patient = args.patient or "SmolLM2-135M-Instruct (embedded)"
    if not args.weak_to_strong:
        return f"Patient: {patient}; the doctors are LoRA copies of it (or its first layers)."
    return (
        f"Weak to strong. Patient: {patient}, frozen; the doctors are LoRA adapters on {args.doctor_base} and decode "
        "against their initial weights (its base rows share the adapter's forward); the rows 'doctors' base alone' "
        "and 'DPO on the doctors' base' are that model without the patient, and 'DPO (TRL, LoRA)' fine-tunes the "
        "patient itself."
    )


def intro_lines(args: DemoArguments, outcome: DemoOutcome) -> list[str]:
    """The models, the task, the judge, the evaluation protocol, and how each guided method's beta was chosen."""
    llmdoctor_beta = (
        f"its guidance beta ({args.guidance_beta:g}, chosen before this run on validation prompts: docs/results.md)"
        if not args.choose_guidance_beta
        else "the beta chosen on the validation prompts by `choose_beta` (below)"
    )
    return [
        models_line(args),
        "",
        f"Task: {args.demo_task.summary}; judge: {args.judge} ({args.demo_task.score_meaning}). "
        f"{len(outcome.eval_prompts)} held-out prompts x {len(args.seeds)} sampling seeds {args.seeds}, the same "
        "prompts and seeds for every method. Win rates are paired (same prompt, same seed), ties counting one half; "
        "intervals are 95% bootstrap intervals over prompts.",
        "",
        f"LLMdoctor decodes (ratio guidance) at {llmdoctor_beta}; the GenARM-style doctor at the beta of "
        + ", ".join(f"{b:g}" for b in args.baseline_betas)
        + f" that scored best on {args.validation_prompts} validation "
        "prompts of this run (training prompts kept out of the pairs); the paper-literal ablation (mixed in, no "
        "flow reference) at beta 1, not swept (its validation scores at betas 1, 2 and 4 overlapped in every earlier run; "
        "docs/results.md). Betas used: "
        + (", ".join(f"{name} {beta:g}" for name, beta in outcome.chosen_betas.items()) or "none")
        + ".",
    ]


def data_lines(args: DemoArguments, outcome: DemoOutcome) -> list[str]:
    """The preference pairs (count, mean judge scores) and the token rewards (count, sparsity)."""
    pairs, rewards = outcome.pair_stats, outcome.reward_stats
    return [
        f"- Preference pairs: {pairs['pairs']} (mean judge score chosen {pairs['mean_chosen_score']:+.3f}, rejected "
        f"{pairs['mean_rejected_score']:+.3f}; {pairs['prompts_without_a_pair']} prompts gave no pair).",
        f"- Token rewards: {rewards['completion_tokens']} completion tokens, {rewards['nonzero_fraction']:.1%} non-zero "
        f"(theta={args.theta}); token heatmap: `token_rewards.html`, `token_rewards.png`.",
    ]


def sample_lines(outcome: DemoOutcome, prompts: int = 5) -> list[str]:
    """Every method's first-seed text and score for the first `prompts` held-out prompts, one section each."""
    lines = []
    for i, prompt in enumerate(outcome.eval_prompts[:prompts]):
        lines += [f"### {prompt[0]['content']}", ""]
        lines += [f"- **{r.name}** ({r.scores[i]:+.2f}): {r.texts[i]}" for r in outcome.results]
        lines.append("")
    return lines
