"""The demo's training data: preference pairs sampled from the patient and ranked by the judge, then scored token by
token by the patient's two faces (stage 1), with a heatmap of the first pairs' token rewards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasets import Dataset

from ..evaluation import patient_generate_fn
from ..evaluation.judges import judge_scores
from ..rewards.config import TokenRewardConfig
from ..rewards.scorer import TokenRewardScorer, reward_statistics
from ..rewards.visualize import plot_token_rewards_png, render_token_rewards_html


if TYPE_CHECKING:
    from .context import DemoContext

HEATMAP_PAIRS = 3  # pairs whose chosen and rejected token rewards the heatmap shows


def build_preference_pairs(context: DemoContext, prompts: list[list[dict]]) -> tuple[Dataset, dict]:
    """Sample `samples_per_prompt` continuations per prompt; keep the judge's best and worst as chosen/rejected.
    Returns the pairs and their statistics (`pair_statistics`)."""
    args, judge = context.args, context.judge
    sample = patient_generate_fn(
        context.patient,
        context.tokenizer,
        batch_size=16,
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
        max_new_tokens=args.max_new_tokens,
    )
    samples = [sample(prompts, args.seed + k) for k in range(args.samples_per_prompt)]
    scores = [judge_scores(judge, texts, prompts) for texts in samples]
    rows, prompts_without_a_pair = [], 0
    for i, prompt in enumerate(prompts):
        scored = sorted(((score[i], texts[i]) for score, texts in zip(scores, samples)), key=lambda pair: pair[0])
        (worst_score, worst), (best_score, best) = scored[0], scored[-1]
        if best_score == worst_score or not best.strip():
            prompts_without_a_pair += 1
            continue
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": best}],
                "rejected": [{"role": "assistant", "content": worst}],
                "chosen_score": best_score,
                "rejected_score": worst_score,
            }
        )
    if not rows:
        raise ValueError(
            f"No preference pairs: for each of the {len(prompts)} pair prompts the judge gave all "
            f"{args.samples_per_prompt} samples the same score (or the best was empty). Sample more per prompt "
            "(--samples_per_prompt), allow longer completions (--max_new_tokens) or use more prompts."
        )
    return Dataset.from_list(rows), pair_statistics(rows, prompts_without_a_pair)


def pair_statistics(rows: list[dict], prompts_without_a_pair: int) -> dict:
    """How many pairs, how many prompts gave none, and the mean judge score of the chosen and rejected sides."""
    return {
        "pairs": len(rows),
        "prompts_without_a_pair": prompts_without_a_pair,
        "mean_chosen_score": sum(r["chosen_score"] for r in rows) / max(len(rows), 1),
        "mean_rejected_score": sum(r["rejected_score"] for r in rows) / max(len(rows), 1),
    }


def score_pairs(context: DemoContext, pairs: Dataset) -> tuple[Dataset, dict]:
    """Stage 1 on the pairs (the patient's two faces, `args.theta`), plus a heatmap of the token rewards of the first
    pairs; returns the scored pairs and their reward statistics."""
    reward_config = TokenRewardConfig(
        positive_system_prompt=context.args.demo_task.positive_face,
        negative_system_prompt=context.args.demo_task.negative_face,
        theta=context.args.theta,
        batch_size=16,
        max_length=256,
    )
    scorer = TokenRewardScorer(context.patient, context.tokenizer, reward_config)
    scored = scorer.score_dataset(pairs)
    write_token_reward_heatmaps(context, scorer, pairs)
    return scored, reward_statistics(scored)


def write_token_reward_heatmaps(context: DemoContext, scorer: TokenRewardScorer, pairs: Dataset) -> None:
    """`token_rewards.html` and `token_rewards.png`: the chosen then the rejected completions of the first pairs."""
    shown = pairs.select(range(min(HEATMAP_PAIRS, len(pairs))))
    examples = [scorer.score(row["prompt"], row["chosen"], chosen=True) for row in shown]
    examples += [scorer.score(row["prompt"], row["rejected"], chosen=False) for row in shown]
    output_dir, tokenizer = context.output_dir, context.tokenizer
    render_token_rewards_html(
        examples, output_dir / "token_rewards.html", title="Token rewards of training examples", tokenizer=tokenizer
    )
    plot_token_rewards_png(examples, output_dir / "token_rewards.png", tokenizer=tokenizer)
