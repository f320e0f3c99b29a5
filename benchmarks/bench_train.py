"""Training throughput: TFPOTrainer versus TRL's DPOTrainer on the same model, data and batch shape.

Both train the same initial weights on the same preference pairs (TFPO from token rewards scored beforehand:
stage 1 is not timed here, see bench_rewards.py). Throughput counts the real (non-pad) tokens of prompt+chosen and
prompt+rejected per second of wall time from building the trainer to the end of `train()`: TFPO's reference
log-probabilities (one no-grad pass over the data, in the constructor) and DPO's reference forward (one per step)
are both inside the clock.

    python benchmarks/bench_train.py                 # a 4-layer truncated SmolLM2 (embedded default)
    python benchmarks/bench_train.py --smoke         # tiny random Llama, 4 pairs, one repeat: seconds
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
import warnings

import torch
from datasets import Dataset

from tfpo_hf import DoctorModel, TFPOConfig, TFPOTrainer
from tfpo_hf.doctor.modeling import truncated_causal_lm


WORDS = (
    "the a river light morning quiet garden stone friendly clear answer question simple careful detailed "
    "warm cold help explain because often never always small large city history music science water"
).split()
# --smoke: a tiny random Llama (tfpo_hf.testing) and these sizes (explicit flags still win over them).
SMOKE = {"layers": 2, "pairs": 4, "batch_size": 2, "repeats": 1, "threads": 1}


def make_pairs(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def sentence(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."

    return [
        {
            "prompt": [{"role": "user", "content": sentence(6, 14)}],
            "chosen": [{"role": "assistant", "content": sentence(15, 40)}],
            "rejected": [{"role": "assistant", "content": sentence(8, 30)}],
        }
        for _ in range(count)
    ]


def load_model_and_tokenizer(args: argparse.Namespace):
    if args.smoke:
        from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

        return tiny_causal_lm(hidden_size=64, num_hidden_layers=args.layers, logit_scale=1.0), tiny_tokenizer()
    if args.patient:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tfpo_hf.testing import random_causal_lm_like

        tokenizer = AutoTokenizer.from_pretrained(args.patient)
        patient = (
            random_causal_lm_like(args.patient)
            if args.random_weights
            else AutoModelForCausalLM.from_pretrained(args.patient)
        )
        return truncated_causal_lm(patient, args.layers), tokenizer
    from tfpo_hf import load_default_patient

    patient, tokenizer = load_default_patient()
    return truncated_causal_lm(patient, args.layers), tokenizer


def scored_copy(pairs: Dataset, model, tokenizer, max_length: int) -> Dataset:
    """Score the pairs once with the model itself as patient (rewards' values do not change the cost)."""
    from tfpo_hf import TokenRewardConfig, TokenRewardScorer

    return TokenRewardScorer(model, tokenizer, TokenRewardConfig(max_length=max_length)).score_dataset(pairs)


def count_tokens(scored: Dataset) -> int:
    return sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(scored["prompt_ids"], scored["chosen_ids"], scored["rejected_ids"])
    )


def shared_training_arguments(args: argparse.Namespace, output_dir: str) -> dict:
    """The `TrainingArguments` both trainers run with, so the comparison differs only in the method."""
    return dict(
        output_dir=output_dir,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        report_to="none",
        use_cpu=args.device == "cpu",
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        learning_rate=1e-5,
        bf16=args.bf16,
    )


def time_tfpo(model, tokenizer, scored: Dataset, args: argparse.Namespace, output_dir: str) -> float:
    config = TFPOConfig(**shared_training_arguments(args, output_dir))
    doctor = DoctorModel(copy.deepcopy(model))
    start = time.perf_counter()
    trainer = TFPOTrainer(doctor, args=config, train_dataset=scored, processing_class=tokenizer)
    trainer.train()
    return time.perf_counter() - start


def time_dpo(model, tokenizer, pairs: Dataset, args: argparse.Namespace, output_dir: str) -> float:
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(**shared_training_arguments(args, output_dir), gradient_checkpointing=False)
    policy, reference = copy.deepcopy(model), copy.deepcopy(model).eval()
    start = time.perf_counter()
    trainer = DPOTrainer(policy, ref_model=reference, args=config, train_dataset=pairs, processing_class=tokenizer)
    trainer.train()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="decoder layers kept (truncated SmolLM2 / tiny depth)")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision for both trainers")
    parser.add_argument("--patient", default=None, help="local model folder instead of the embedded SmolLM2")
    parser.add_argument("--random-weights", action="store_true", help="with --patient: random weights, same cost")
    parser.add_argument(
        "--smoke", action="store_true", help=f"a run of seconds on a tiny random Llama, what the tests run: {SMOKE}"
    )
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    model, tokenizer = load_model_and_tokenizer(args)
    model_name = "tiny random Llama" if args.smoke else f"{args.patient or 'SmolLM2-135M-Instruct'}, truncated"
    model_name += ", random weights" if args.patient and args.random_weights else ""
    pairs = Dataset.from_list(make_pairs(args.pairs, seed=0))
    scored = scored_copy(pairs, model, tokenizer, args.max_length)
    tokens = count_tokens(scored)
    print(
        f"model: {model_name} ({args.layers} layers, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), "
        f"{args.pairs} pairs, batch {args.batch_size}, {tokens} tokens per epoch, device {args.device}, "
        f"{'bf16' if args.bf16 else 'fp32'}, {args.threads} threads"
    )

    timings = {"TFPOTrainer": [], "DPOTrainer": []}
    with tempfile.TemporaryDirectory() as output_dir:
        for _ in range(args.repeats):  # alternate so drift in machine load hits both alike
            timings["TFPOTrainer"].append(time_tfpo(model, tokenizer, scored, args, output_dir))
            timings["DPOTrainer"].append(time_dpo(model, tokenizer, pairs, args, output_dir))
    for name, seconds in timings.items():
        print(
            f"{name:12s} tokens/s: best {tokens / min(seconds):8.0f}   median {tokens / statistics.median(seconds):8.0f}"
            f"   (epoch seconds: {', '.join(f'{s:.2f}' for s in seconds)})"
        )
    ratio_best = min(timings["DPOTrainer"]) / min(timings["TFPOTrainer"])
    ratio_median = statistics.median(timings["DPOTrainer"]) / statistics.median(timings["TFPOTrainer"])
    print(f"TFPO / DPO throughput ratio: best {ratio_best:.2f}, median {ratio_median:.2f} (target: >= 1.0)")


if __name__ == "__main__":
    main()
