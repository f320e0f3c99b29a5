"""Cross-tokenizer cost: a patient guided by a doctor of another family (another tokenizer), against plain.

The pair is the packaged Qwen2.5-Coder-1.5B-Instruct patient (`make pair`) and the embedded SmolLM2-135M-Instruct as
the doctor's base: 11x smaller, another byte-level BPE (49,152 ids against 151,936). The doctor is a LoRA (r = 16,
every linear layer, random `lora_B`) on a copy of SmolLM2, with ratio guidance against its base
(`references="initial"`); `DoctorLogitsProcessor` reads the patient's text in the doctor's tokens and chat template
(`doctor_tokenizers=`, `conversations=`) and guides the patient's top `--top-k` candidates. Variants, side by side in
one process on the same prompts (chat template, left padded), greedy, `min_new_tokens = max_new_tokens`, interleaved
over `--repeats` rounds: plain `generate()`, and the processor with each `--text-probability` setting (`aligned`:
one doctor path per row; `marginal`: every path within `--beam-size`).

The target (issue 19) is guided <= 2x plain at batch 4 on the CPU. Printed beside each ratio: the doctor's forwards
per generated token (its paths and its base's), which set the cost.

    python benchmarks/bench_cross_tokenizer.py                 # the packaged 1.5B (make pair) + embedded SmolLM2
    python benchmarks/bench_cross_tokenizer.py --top-k 4 --text-probability aligned marginal
    python benchmarks/bench_cross_tokenizer.py --smoke         # tiny random models of two tokenizers: seconds
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import PROMPTS, build_processor, lora_copy, no_processor, time_generate  # noqa: E402
from bench_text_probability import CountedForwards  # noqa: E402

from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor  # noqa: E402


SMOKE = {"batch_size": 2, "max_new_tokens": 4, "repeats": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=f"tiny random models of two tokenizers: {SMOKE}")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=10, help="guided candidates per row (`guided_top_k`)")
    parser.add_argument("--beam-size", type=int, default=4, help="`text_beam_size`")
    parser.add_argument("--text-probability", nargs="+", default=["aligned"], choices=["aligned", "marginal"])
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    return args


def load_models(args):
    """`(patient, patient_tokenizer, doctor_base, doctor_tokenizer)`, float32."""
    if args.smoke:
        from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer

        patient_tokenizer, doctor_tokenizer = tiny_tokenizer(), tiny_bpe_tokenizer()
        patient = tiny_causal_lm(hidden_size=64, num_hidden_layers=6, seed=0)
        return patient, patient_tokenizer, tiny_causal_lm(vocab_size=len(doctor_tokenizer), seed=1), doctor_tokenizer
    from tfpo_hf import load_default_patient
    from tfpo_hf.utils.coder_pair import load_coder_pair

    patient, _, patient_tokenizer = load_coder_pair(dtype=torch.float32)
    doctor_base, doctor_tokenizer = load_default_patient()
    return patient, patient_tokenizer, doctor_base, doctor_tokenizer


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    patient, patient_tokenizer, doctor_base, doctor_tokenizer = load_models(args)
    lora_doctor = lora_copy(doctor_base)
    patient_tokenizer.padding_side = "left"
    pad_token_id = patient_tokenizer.pad_token_id if patient_tokenizer.pad_token_id is not None else 0
    patient.generation_config.pad_token_id = pad_token_id
    conversations = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(args.batch_size)]
    texts = [
        patient_tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    inputs = patient_tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    variants = {"plain": no_processor}
    for setting in args.text_probability:
        variants[f"LoRA doctor + base, {setting}"] = functools.partial(
            DoctorLogitsProcessor,
            lora_doctor,
            betas=args.beta,
            references="initial",
            tokenizer=patient_tokenizer,
            doctor_tokenizers=doctor_tokenizer,
            conversations=conversations,
            guided_top_k=args.top_k,
            text_probability=setting,
            text_beam_size=args.beam_size,
        )
    times = {name: [] for name in variants}
    forwards = {name: CountedForwards() for name in variants}
    for make_processor in variants.values():  # warm-up
        time_generate(patient, inputs, build_processor(make_processor, inputs), 2, torch.device("cpu"))
    for _ in range(args.repeats):
        for name, make_processor in variants.items():
            processor = build_processor(make_processor, inputs)
            with forwards[name]:
                times[name].append(time_generate(patient, inputs, processor, args.max_new_tokens, torch.device("cpu")))
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)

    weights = "tiny random models" if args.smoke else "packaged Qwen2.5-Coder-1.5B + embedded SmolLM2-135M"
    print(
        f"cross-tokenizer: {weights}, float32, threads {torch.get_num_threads()}, batch {args.batch_size}, prompt "
        f"length {inputs['input_ids'].shape[1]}, {args.max_new_tokens} new tokens, greedy, beta {args.beta}, top-k "
        f"{args.top_k}, beam {args.beam_size}, repeats {args.repeats}"
    )
    header = (
        f"{'variant':40s} {'min s':>8s} {'median s':>9s} {'x plain':>8s} {'paths/token':>12s} {'committed/token':>16s}"
    )
    print(header)
    print("-" * len(header))
    plain = min(times["plain"])
    generated = args.repeats * args.batch_size * args.max_new_tokens
    for name in variants:
        best, median = min(times[name]), statistics.median(times[name])
        counted = forwards[name]
        print(
            f"{name:40s} {best:8.3f} {median:9.3f} {best / plain:8.2f} {counted.paths / generated:12.2f} "
            f"{counted.committed / generated:16.2f}"
        )
    guided = min(min(times[name]) for name in variants if name != "plain") / plain
    print(f"target: guided <= 2.00x plain: {guided:.2f}x ({'met' if guided <= 2.0 else 'missed'})")


if __name__ == "__main__":
    main()
