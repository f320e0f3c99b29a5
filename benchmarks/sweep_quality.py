"""Choose TFPO's defaults on the demo task without touching its evaluation prompts.

Builds the demo's preference pairs once (the same split as `tfpo-hf demo`: pair prompts, validation prompts and
held-out evaluation prompts from one seeded shuffle), then for every combination of the grid trains a doctor and
decodes the *validation* prompts at every beta of `--betas`, against the unguided sampled patient. Prints one row per
(setting, beta): mean judge score and win rate with 95% bootstrap intervals over prompts, distinct-2 relative to the
unguided patient. DPO (TRL, LoRA) and the GenARM-style doctor can be swept too. Rows are also appended, as JSON
with every sample's score (paired by seed and prompt across rows), to `--output_dir/sweep.jsonl`. Every flag of
`tfpo-hf demo` is accepted (sizes, training, decoding, the judge).

    python benchmarks/sweep_quality.py --learning_rates 2e-4 5e-4 --dpo_learning_rates 2e-4 5e-4 --betas 1 2 4
    python benchmarks/sweep_quality.py --thetas 0.3 0.7 --lambda_values 0.1 1.0
    python benchmarks/sweep_quality.py --flow_references none --genarm_learning_rates 5e-4   # ablation, baseline
    python benchmarks/sweep_quality.py --smoke   # tiny sizes, one row of each kind, in a temporary folder: ~1 minute
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from trl import TrlParser

from tfpo_hf.demo import (
    DemoArguments,
    DemoContext,
    DoctorFamily,
    Method,
    build_preference_pairs,
    guided_method,
    score_pairs,
    split_prompts,
    train_doctor,
    train_dpo,
    unguided_method,
)
from tfpo_hf.demo.arguments import DEMO_LEARNING_RATE, option
from tfpo_hf.demo.doctors import load_for_decoding
from tfpo_hf.demo.methods import sampled_method
from tfpo_hf.evaluation import MethodResult, evaluate_methods
from tfpo_hf.training.baselines import TrajectoryBTTrainer
from tfpo_hf.training.trainer import TFPOTrainer


# --smoke: the demo's flags and the sweep's at these values (explicit flags still win), in a temporary folder:
# 8 pair prompts, 2 validation prompts, one seed, and one row of each kind (TFPO, GenARM-style, DPO).
SMOKE = {
    "train_prompts": 10,
    "validation_prompts": 2,
    "eval_prompts": 1,
    "samples_per_prompt": 2,
    "max_new_tokens": 8,
    "epochs": 1.0,
    "seeds": [0],
    "betas": [1.0],
    "genarm_learning_rates": [DEMO_LEARNING_RATE],
    "dpo_learning_rates": [DEMO_LEARNING_RATE],
}


@dataclass
class SweepArguments:
    """The grid (the demo's other flags stay fixed) and the betas every trained doctor is decoded at."""

    learning_rates: list[float] = option([DEMO_LEARNING_RATE], "Learning rates of the TFPO doctor.")
    thetas: list[float] = option([0.5], "Reward sparsity thresholds.")
    lambda_values: list[float] = option([0.1], "Value-loss weights.")
    flow_references: list[str] = option(["initial"], "Flow references of the TFPO doctor: initial and/or none.")
    genarm_learning_rates: list[float] = option([], "Learning rates of the GenARM-style doctor (none: skipped).")
    dpo_learning_rates: list[float] = option([], "Learning rates of DPO, the bar to beat (none: skipped).")
    betas: list[float] = option([1.0, 2.0, 4.0], "Betas every trained doctor decodes the validation prompts at.")
    smoke: bool = option(False, f"Tiny sizes in a temporary folder: {SMOKE}.")


def result_row(setting: str, result: MethodResult, unguided: MethodResult, train_seconds: float) -> dict:
    """One row of `sweep.jsonl`: a method's score and win rate with their intervals, its diversity, every score."""
    return {
        "setting": setting,
        "beta": result.beta,
        "score": result.mean_score,
        "score_low": result.score_interval[0],
        "score_high": result.score_interval[1],
        "win": result.win_rate,
        "win_low": result.win_rate_interval[0],
        "win_high": result.win_rate_interval[1],
        "distinct_2": result.distinct_2,
        "distinct_2_ratio": result.distinct_2 / unguided.distinct_2,
        "train_seconds": train_seconds,
        "scores": result.scores,
    }


def print_rows(rows: list[dict], log: Path) -> None:
    """Append `rows` to `log` (JSON lines) and print each on one line."""
    with log.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            print(
                f"{row['setting']:58s} beta={row['beta']!s:5s} score {row['score']:+.3f} "
                f"[{row['score_low']:+.2f},{row['score_high']:+.2f}] win {row['win']:.2f} "
                f"[{row['win_low']:.2f},{row['win_high']:.2f}] distinct-2 x{row['distinct_2_ratio']:.2f}",
                flush=True,
            )


def validation_evaluator(context: DemoContext, unguided: Method, prompts: list) -> Callable:
    """`evaluate(setting, methods, train_seconds)`: judge `methods` and the unguided patient on the validation
    `prompts` at every seed, then log and print one row per method."""

    def evaluate(setting: str, methods: list[Method], train_seconds: float) -> None:
        results = evaluate_methods([unguided] + methods, prompts, context.judge, unguided.name, context.args.seeds)
        rows = [result_row(setting, result, results[0], train_seconds) for result in results]
        print_rows(rows, context.output_dir / "sweep.jsonl")

    return evaluate


def sweep_doctors(context: DemoContext, sweep: SweepArguments, pairs, evaluate: Callable) -> None:
    """Train and evaluate a TFPO doctor per grid point, then a GenARM-style doctor per learning rate."""
    demo_args = context.args
    grid = itertools.product(sweep.thetas, sweep.learning_rates, sweep.lambda_values, sweep.flow_references)
    settings = [
        (
            f"TFPO ref={flow_reference} lr={learning_rate:g} theta={theta:g} lambda={lambda_value:g}",
            replace(demo_args, theta=theta, learning_rate=learning_rate, lambda_value=lambda_value),
            DoctorFamily("TFPO", "sweep_doctor", TFPOTrainer, {"flow_reference": flow_reference}),
        )
        for theta, learning_rate, lambda_value, flow_reference in grid
    ]
    settings += [
        (
            f"GenARM-style lr={learning_rate:g}",
            replace(demo_args, learning_rate=learning_rate),
            DoctorFamily("GenARM-style", "sweep_genarm", TrajectoryBTTrainer),
        )
        for learning_rate in sweep.genarm_learning_rates
    ]
    for setting, args, family in settings:
        setting_context = replace(context, args=args)
        clock = time.perf_counter()
        scored, _ = score_pairs(setting_context, pairs)
        doctor = load_for_decoding(setting_context, train_doctor(setting_context, family, scored))
        methods = [guided_method(setting_context, f"beta={beta:g}", doctor, beta) for beta in sweep.betas]
        evaluate(setting, methods, time.perf_counter() - clock)


def sweep_dpo(context: DemoContext, sweep: SweepArguments, pairs, evaluate: Callable) -> None:
    """Train and evaluate DPO per learning rate."""
    for learning_rate in sweep.dpo_learning_rates:
        clock = time.perf_counter()
        dpo_context = replace(context, args=replace(context.args, learning_rate=learning_rate))
        folder = train_dpo(dpo_context, pairs, context.patient, "DPO", "sweep_dpo")
        evaluate(f"DPO lr={learning_rate:g}", [sampled_method(context, "DPO", folder)], time.perf_counter() - clock)


def run_sweep(demo_args: DemoArguments, sweep: SweepArguments) -> None:
    """Build the pairs once, then sweep the doctors and DPO on the validation prompts."""
    context = DemoContext.load(demo_args)
    pair_prompts, validation_prompts, _ = split_prompts(demo_args)  # the evaluation prompts stay unseen
    pairs, stats = build_preference_pairs(context, pair_prompts)
    print(
        f"{stats['pairs']} pairs; validation: {len(validation_prompts)} prompts x seeds {demo_args.seeds}", flush=True
    )
    evaluate = validation_evaluator(context, unguided_method(context), validation_prompts)
    sweep_doctors(context, sweep, pairs, evaluate)
    sweep_dpo(context, sweep, pairs, evaluate)
    print(json.dumps(asdict(demo_args)))


def main() -> None:
    """Parse the demo's and the sweep's flags and run the sweep (with `--smoke`: at `SMOKE`'s sizes)."""
    parser = TrlParser((DemoArguments, SweepArguments))
    demo_args, sweep = parser.parse_args_and_config()
    if not sweep.smoke:
        run_sweep(demo_args, sweep)
        return
    with tempfile.TemporaryDirectory(prefix="sweep_quality_smoke_") as scratch:
        parser.set_defaults(**SMOKE, output_dir=scratch)
        run_sweep(*parser.parse_args_and_config())


if __name__ == "__main__":
    main()
