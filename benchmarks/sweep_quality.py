"""Choose TFPO's defaults on the demo task without touching its evaluation prompts.

Builds the demo's preference pairs once (the same split as `tfpo-hf demo`: pair prompts, validation prompts and
held-out evaluation prompts from one seeded shuffle), then for every combination of the grid trains a doctor and
decodes the *validation* prompts at every beta, against the unguided sampled patient. Prints one row per
(setting, beta): mean judge score and win rate with 95% bootstrap intervals over prompts, distinct-2 relative to the
unguided patient. DPO (TRL, LoRA) and the GenARM-style doctor can be swept too. Rows are also appended, as JSON
with every sample's score (paired by seed and prompt across rows), to `--output_dir/sweep.jsonl`.

    python benchmarks/sweep_quality.py --learning_rates 2e-4 5e-4 --dpo_learning_rates 2e-4 5e-4 --betas 1 2 4
    python benchmarks/sweep_quality.py --thetas 0.3 0.7 --lambda_values 0.1 1.0
    python benchmarks/sweep_quality.py --flow_references none --genarm_learning_rates 5e-4   # ablation, baseline
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from trl import TrlParser

from tfpo_hf.demo import (
    DemoArguments,
    DoctorRun,
    Method,
    build_preference_pairs,
    guided_method,
    memoized,
    score_pairs,
    split_prompts,
    train_doctor,
    train_dpo,
)
from tfpo_hf.evaluation import evaluate_methods, get_judge, patient_generate_fn
from tfpo_hf.training.baselines import TrajectoryBTTrainer
from tfpo_hf.training.trainer import TFPOTrainer
from tfpo_hf.utils.embedded_patient import DTYPES, load_default_patient


@dataclass
class SweepArguments:
    learning_rates: list[float] = field(default_factory=lambda: [5e-4], metadata={"help": "Learning rates."})
    thetas: list[float] = field(default_factory=lambda: [0.5], metadata={"help": "Reward sparsity thresholds."})
    lambda_values: list[float] = field(default_factory=lambda: [0.1], metadata={"help": "Value-loss weights."})
    flow_references: list[str] = field(default_factory=lambda: ["initial"], metadata={"help": "initial and/or none."})
    genarm_learning_rates: list[float] = field(
        default_factory=list, metadata={"help": "Learning rates of the GenARM-style doctor (none: skipped)."}
    )
    dpo_learning_rates: list[float] = field(
        default_factory=list, metadata={"help": "Learning rates of DPO, the bar to beat (none: skipped)."}
    )


def print_rows(rows: list[dict], log: Path) -> None:
    with log.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            print(
                f"{row['setting']:58s} beta={row['beta']!s:5s} score {row['score']:+.3f} "
                f"[{row['score_low']:+.2f},{row['score_high']:+.2f}] win {row['win']:.2f} "
                f"[{row['win_low']:.2f},{row['win_high']:.2f}] distinct-2 x{row['distinct_2_ratio']:.2f}",
                flush=True,
            )


def main() -> None:
    demo_args, sweep = TrlParser((DemoArguments, SweepArguments)).parse_args_and_config()
    output_dir = Path(demo_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir / "sweep.jsonl"
    judge = get_judge(demo_args.judge)
    patient, tokenizer = load_default_patient(dtype=DTYPES[demo_args.dtype])
    pair_prompts, validation_prompts, _ = split_prompts(demo_args)  # the evaluation prompts stay unseen
    pairs, stats = build_preference_pairs(patient, tokenizer, pair_prompts, judge, demo_args)
    print(
        f"{stats['pairs']} pairs; validation: {len(validation_prompts)} prompts x seeds {demo_args.seeds}", flush=True
    )
    sampling = dict(
        do_sample=True,
        temperature=demo_args.temperature,
        top_p=demo_args.top_p,
        max_new_tokens=demo_args.max_new_tokens,
    )
    unguided = Method(
        "patient (sampling)", memoized(patient_generate_fn(patient, tokenizer, batch_size=8, **sampling))
    )

    def evaluate(setting: str, methods: list[Method], elapsed: float) -> None:
        results = evaluate_methods([unguided] + methods, validation_prompts, judge, unguided.name, demo_args.seeds)
        base = results[0]
        print_rows(
            [
                {
                    "setting": setting,
                    "beta": r.beta,
                    "score": r.mean_score,
                    "score_low": r.score_interval[0],
                    "score_high": r.score_interval[1],
                    "win": r.win_rate,
                    "win_low": r.win_rate_interval[0],
                    "win_high": r.win_rate_interval[1],
                    "distinct_2": r.distinct_2,
                    "distinct_2_ratio": r.distinct_2 / base.distinct_2,
                    "train_seconds": elapsed,
                    "scores": r.scores,
                }
                for r in results
            ],
            log,
        )

    grid = itertools.product(sweep.thetas, sweep.learning_rates, sweep.lambda_values, sweep.flow_references)
    for theta, learning_rate, lambda_value, flow_reference in grid:
        args = replace(demo_args, theta=theta, learning_rate=learning_rate, lambda_value=lambda_value)
        scored, _ = score_pairs(patient, tokenizer, pairs, args, output_dir)
        run = DoctorRun("TFPO", "sweep_doctor", TFPOTrainer, {"flow_reference": flow_reference})
        clock = time.perf_counter()
        doctor = train_doctor(run, patient, scored, tokenizer, args, output_dir, {}, {})
        setting = f"TFPO ref={flow_reference} lr={learning_rate:g} theta={theta:g} lambda={lambda_value:g}"
        evaluate(
            setting,
            [guided_method(f"beta={b:g}", doctor, b, patient, tokenizer, sampling) for b in args.betas],
            time.perf_counter() - clock,
        )
    for learning_rate in sweep.genarm_learning_rates:
        args = replace(demo_args, learning_rate=learning_rate)
        clock = time.perf_counter()
        scored, _ = score_pairs(patient, tokenizer, pairs, args, output_dir)
        run = DoctorRun("GenARM-style", "sweep_genarm", TrajectoryBTTrainer)
        doctor = train_doctor(run, patient, scored, tokenizer, args, output_dir, {}, {})
        evaluate(
            f"GenARM-style lr={learning_rate:g}",
            [guided_method(f"beta={b:g}", doctor, b, patient, tokenizer, sampling) for b in args.betas],
            time.perf_counter() - clock,
        )
    for learning_rate in sweep.dpo_learning_rates:
        clock = time.perf_counter()
        model, _ = train_dpo(
            patient, tokenizer, pairs, output_dir / "runs" / "dpo", replace(demo_args, learning_rate=learning_rate)
        )
        evaluate(
            f"DPO lr={learning_rate:g}",
            [Method("DPO", patient_generate_fn(model, tokenizer, batch_size=8, **sampling))],
            time.perf_counter() - clock,
        )
    print(json.dumps(asdict(demo_args)))


if __name__ == "__main__":
    main()
