"""Weak-to-strong cost: a 1.5B patient guided by a 0.5B LoRA doctor whose reference is its own base, against plain.

The pair is Qwen2.5-Coder-1.5B-Instruct (patient) and Qwen2.5-Coder-0.5B-Instruct (the doctor's base): one tokenizer,
untied output heads of 151,936 rows. The doctor is a LoRA (r = 16, every linear layer, random `lora_B`) on a copy of
the 0.5B, as `TFPOTrainer` trains it; its guidance is ratio guidance against its initial weights,
`log p_patient + beta (log p_doctor - log p_doctor_initial)`. Variants, side by side in one process on the same
prompts (chat template, left padded), greedy, `min_new_tokens = max_new_tokens`, interleaved over `--repeats` rounds:

- plain `generate()` of the patient;
- the processor with the LoRA doctor, adapter rows and base rows in one forward (`references="initial"`, the default
  path: the adapter's delta zeroed on the base's rows by `RowMask`s);
- the same through PEFT's per-row adapter names (the path of adapters `RowMask` cannot take: `modules_to_save`,
  DoRA; the default path before it);
- the processor with the doctor merged and its base as a separate model (two forwards of the 0.5B per token).

The target is guided <= 1.5x plain at batch 4, 64 new tokens on the CPU; the bound printed beside it is
`1 + doctor step / patient step`, where a step is one incremental decode forward over the prompt batch's KV cache
(the doctor's with its base rows), timed alone.

    python benchmarks/bench_pair.py                      # the packaged pair (make pair), float32
    python benchmarks/bench_pair.py --bf16
    python benchmarks/bench_pair.py --random-weights     # random weights of the pair's shapes: nothing to load (GPU)
    python benchmarks/bench_pair.py --smoke              # two tiny random models of different sizes: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import (  # noqa: E402
    build_processor,
    decode_step_time,
    encode_prompts,
    lora_copy,
    no_processor,
    time_generate,
)

from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor  # noqa: E402


# The pair's architectures (Qwen2ForCausalLM), as the packaged checkpoints' config.json give them.
SHARED = {"num_key_value_heads": 2, "vocab_size": 151_936, "tie_word_embeddings": False, "rope_theta": 1e6}
SHAPES = {
    "patient": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12},
    "doctor": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14},
}
FUSED = "LoRA doctor + base rows, one forward"
PEFT_ROUTED = "the same, PEFT's per-row adapter routing"
SMOKE = {"batch_size": 2, "max_new_tokens": 4, "repeats": 1, "threads": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=f"tiny random models of two sizes: {SMOKE}")
    parser.add_argument("--random-weights", action="store_true", help="random weights of the pair's exact shapes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 weights (default float32)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beta", type=float, default=1.0)
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    return args


def routing(variant: str):
    """Inside the block, a LoRA doctor's base rows go through PEFT's per-row adapter names for the `PEFT_ROUTED`
    variant (as for an adapter that `RowMask` cannot take), through `RowMask`s otherwise."""
    if variant != PEFT_ROUTED:
        return contextlib.nullcontext()
    return mock.patch("tfpo_hf.guidance.cached_forward.row_maskable", return_value=False)


def random_qwen2(role: str, dtype: torch.dtype, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(**SHARED, **SHAPES[role])).to(dtype).eval()


def load_pair(args, dtype):
    """`(patient, doctor_base, tokenizer)`; the tokenizer is the tiny one for --smoke, None with --random-weights."""
    if args.smoke:
        from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

        patient = tiny_causal_lm(hidden_size=64, num_hidden_layers=6, seed=0).to(dtype)
        return patient, tiny_causal_lm(hidden_size=32, num_hidden_layers=2, seed=1).to(dtype), tiny_tokenizer()
    if args.random_weights:
        return random_qwen2("patient", dtype, 0), random_qwen2("doctor", dtype, 1), None
    from tfpo_hf.utils.coder_pair import load_coder_pair

    return load_coder_pair(dtype=dtype)


def prompt_batch(tokenizer, batch_size: int, device) -> dict:
    """Chat-templated prompts, left padded; random ids of a typical prompt length when there is no tokenizer."""
    if tokenizer is None:
        input_ids = torch.randint(0, 151_000, (batch_size, 40), generator=torch.Generator().manual_seed(0))
        return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids, device=device)}
    tokenizer.padding_side = "left"
    return encode_prompts(tokenizer, batch_size, device)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    patient, doctor_base, tokenizer = load_pair(args, dtype)
    patient.to(device), doctor_base.to(device)
    lora_doctor = lora_copy(doctor_base)
    merged_doctor = copy.deepcopy(lora_doctor).merge_and_unload().eval()
    inputs = prompt_batch(tokenizer, args.batch_size, device)
    pad_token_id = tokenizer.pad_token_id if tokenizer is not None else 0
    patient.generation_config.pad_token_id = pad_token_id

    def processor(doctor, references):
        return functools.partial(
            DoctorLogitsProcessor, doctor, betas=args.beta, references=references, pad_token_id=pad_token_id
        )

    variants = {
        "plain": no_processor,
        FUSED: processor(lora_doctor, "initial"),
        PEFT_ROUTED: processor(lora_doctor, "initial"),
        "merged doctor + separate base, two forwards": processor(merged_doctor, doctor_base),
    }
    times = {name: [] for name in variants}
    for name, make_processor in variants.items():  # warm-up
        with routing(name):
            time_generate(patient, inputs, build_processor(make_processor, inputs), 2, device)
    for _ in range(args.repeats):
        for name, make_processor in variants.items():
            proc = build_processor(make_processor, inputs)
            with routing(name):
                times[name].append(time_generate(patient, inputs, proc, args.max_new_tokens, device))

    patient_step = decode_step_time(patient, inputs, device)
    fused_step = decode_step_time(lora_doctor, inputs, device, with_base=True) / patient_step
    with routing(PEFT_ROUTED):
        routed_step = decode_step_time(lora_doctor, inputs, device, with_base=True) / patient_step
    merged_step = decode_step_time(merged_doctor, inputs, device) / patient_step
    base_step = decode_step_time(doctor_base, inputs, device) / patient_step
    bounds = {
        FUSED: 1 + fused_step,
        PEFT_ROUTED: 1 + routed_step,
        "merged doctor + separate base, two forwards": 1 + merged_step + base_step,
    }

    weights = "tiny random models" if args.smoke else "random weights" if args.random_weights else "packaged weights"
    sizes = f"{patient.config.num_hidden_layers}-layer patient, {doctor_base.config.num_hidden_layers}-layer doctor"
    print(
        f"pair: {sizes} ({weights}), {dtype}, device {device}, threads {torch.get_num_threads()}, batch "
        f"{args.batch_size}, prompt length {inputs['input_ids'].shape[1]}, {args.max_new_tokens} new tokens, greedy, "
        f"beta {args.beta}, repeats {args.repeats}"
    )
    plain = min(times["plain"])
    header = f"{'variant':46s} {'min s':>8s} {'median s':>9s} {'tok/s':>8s} {'x plain':>8s} {'bound x':>8s}"
    print(header)
    print("-" * len(header))
    for name in variants:
        best, median = min(times[name]), statistics.median(times[name])
        tokens_per_s = args.batch_size * args.max_new_tokens / best
        bound = f"{bounds[name]:8.2f}" if name in bounds else ""
        print(f"{name:46s} {best:8.3f} {median:9.3f} {tokens_per_s:8.1f} {best / plain:8.2f} {bound}")
    print(
        f"\ndecode steps (x patient step {patient_step * 1e3:.1f} ms): doctor with its base rows {fused_step:.2f} "
        f"(PEFT routing {routed_step:.2f}), merged doctor {merged_step:.2f}, base alone {base_step:.2f}"
    )
    guided = min(times[FUSED]) / plain
    print(f"target: guided <= 1.50x plain: {guided:.2f}x ({'met' if guided <= 1.5 else 'missed'})")


if __name__ == "__main__":
    main()
