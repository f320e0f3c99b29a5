"""Diagnose the weak-to-strong LLMdoctor on validation prompts only: train doctor variants on the run's scored pairs
(`progress/scored_pairs`) with the run's settings, then choose beta (`choose_beta`, betas 1, 2, 4) with each guiding
the 0.5B it was trained from and/or the 1.5B. Resumable: finished rows are kept in `--out` and skipped; trained
doctors are kept under `--output_dir` and reloaded.

    python results/pair_demo/diagnose.py tfpo tfpo_lr2e-4 genarm --patients 0.5B
    python results/pair_demo/diagnose.py tfpo_lr2e-4 --patients 1.5B
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import load_from_disk

from tfpo_hf.demo.arguments import DemoArguments
from tfpo_hf.demo.context import DemoContext
from tfpo_hf.demo.doctors import DoctorFamily, load_for_decoding, train_doctor
from tfpo_hf.demo.prompts import split_prompts
from tfpo_hf.guidance.beta_choice import choose_beta
from tfpo_hf.training.baselines import TrajectoryBTTrainer
from tfpo_hf.training.trainer import TFPOTrainer


HERE = Path(__file__).resolve().parent
THETA = 0.8


def higher_theta(row: dict) -> dict:
    """A scored pair's token rewards with `theta` raised to `THETA` (|r| = S_t, so this is exact)."""
    for side in ("chosen", "rejected"):
        row[f"{side}_token_rewards"] = [r if abs(r) > THETA else 0.0 for r in row[f"{side}_token_rewards"]]
    return row


# name -> (trainer, TFPOConfig overrides, transform of the scored pairs)
VARIANTS = {
    "tfpo": (TFPOTrainer, {}, None),
    "tfpo_lr2e-4": (TFPOTrainer, {"learning_rate": 2e-4}, None),
    "tfpo_lam0": (TFPOTrainer, {"lambda_value": 0.0}, None),
    f"tfpo_theta{THETA}": (TFPOTrainer, {}, lambda pairs: pairs.map(higher_theta)),
    "tfpo_margin": (TFPOTrainer, {}, lambda pairs: pairs.filter(lambda row: float(row["rejected_score"]) < 0)),
    "genarm": (TrajectoryBTTrainer, {}, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", choices=list(VARIANTS))
    parser.add_argument("--patients", nargs="+", default=["0.5B"], choices=["0.5B", "1.5B"])
    parser.add_argument("--out", type=Path, default=HERE / "diagnosis_tfpo_on_doctor_base.json")
    parser.add_argument("--output_dir", default=str(HERE / "diagnosis_models"), help="trained doctors (not in git)")
    options = parser.parse_args()
    results = json.loads(options.out.read_text()) if options.out.exists() else {}

    torch.manual_seed(0)
    args = DemoArguments(pair="qwen2.5-coder", patient_dtype="float32", output_dir=options.output_dir, ablation=False)
    context = DemoContext.load(args)
    scored = load_from_disk(str(HERE / "progress" / "scored_pairs"))
    _, validation, _ = split_prompts(args)
    base = context.doctor_base
    patients = {"0.5B": base, "1.5B": context.patient}
    for name in options.variants:
        trainer_class, overrides, transform = VARIANTS[name]
        folder = Path(options.output_dir) / name
        if not (folder / "doctor_config.json").is_file():
            pairs = transform(scored) if transform else scored
            folder = train_doctor(context, DoctorFamily(name, name, trainer_class, overrides), pairs)
        context.doctor_base = base
        doctor = load_for_decoding(context, folder)
        for patient_name in options.patients:
            key = f"{name}/{patient_name}"
            if key in results:
                continue
            start = time.time()
            choice = choose_beta(
                patients[patient_name],
                context.tokenizer,
                doctor,
                validation,
                betas=[1.0, 2.0, 4.0],
                judge=context.judge,
                seed=0,
                **context.sampling,
            )
            results[key] = {**choice.to_dict(), "seconds": time.time() - start}
            print(key, json.dumps(results[key]["table"]), results[key]["unguided_mean_score"], flush=True)
            options.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
