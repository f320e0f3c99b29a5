"""Guided decoding eager and captured: a small doctor is only cheap when each step runs near the bandwidth bound.

Random-weight models of the public Qwen2.5 shapes (the `config.json` of Qwen2.5-0.5B/1.5B/7B-Instruct: hidden size,
layers, heads, KV heads, vocabulary; nothing to download), greedy, `min_new_tokens = max_new_tokens`, random prompt
ids, interleaved over `--repeats` rounds. Per patient and batch size, each variant eager and captured:

- plain `generate()` of the patient (captured: `cache_implementation="static"` with a `CompileConfig`, transformers'
  own compiled decoding);
- a small full doctor (`--doctor` shape, no reference: the mix);
- a small LoRA doctor against its base (`references="initial"`: adapter rows and base rows in one forward);
- a same-size LoRA doctor through the processor (`references="patient"`);
- the same doctor fused (`GuidedModel`: one forward of patient and doctor rows; eager only).

Captured guided runs compile the patient as plain captured does and pass `compile_doctors=` the same `CompileConfig`
to the processor (static caches, one compiled step per doctor). Each ratio is against plain decoding with the same
capture; beside it, the bandwidth bound: the bytes a step must read (weights, except the rows of untied input
embeddings, plus the KV cache at the mean length) of patient and doctors over the patient's alone.

    python benchmarks/bench_capture.py --device cuda --bf16                       # GPU: 1.5B and 7B, batches 1 8 32
    python benchmarks/bench_capture.py --patients 1.5B --batch-sizes 1 4 --max-new-tokens 16   # a CPU-sized run
    python benchmarks/bench_capture.py --smoke                                   # tiny shapes, traced: seconds

GPU targets (bf16, batch 1 and 8, 64 new tokens): 0.5B LoRA doctor with its reference -> 7B <= 1.25x plain captured;
same-size fused <= 1.5x; captured plain >= 4x the tokens/s of eager plain. A CPU has no CUDA graphs: the captured
rows there check the path (inductor kernels, static caches), not the GPU's gain.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import torch
from transformers import CompileConfig, Qwen2Config, Qwen2ForCausalLM


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import (  # noqa: E402
    build_processor,
    kv_cache_megabytes,
    lora_copy,
    no_processor,
    time_generate,
)

from tfpo_hf.guidance.guided_model import GuidedModel  # noqa: E402
from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor  # noqa: E402


# Public config.json of Qwen2.5-{0.5B,1.5B,7B}-Instruct (rope_theta 1e6 for all three).
SHAPES = {
    "0.5B": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 151_936, "tie_word_embeddings": True},
    "1.5B": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "vocab_size": 151_936, "tie_word_embeddings": True},
    "7B": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152_064, "tie_word_embeddings": False},
    # --smoke: two tiny shapes of different widths and depths
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": False},
    "tinier": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 1, "vocab_size": 512, "tie_word_embeddings": True},
}  # fmt: skip
SMOKE = {
    "patients": ["tiny"],
    "doctor": "tinier",
    "batch_sizes": [1, 2],
    "prompt_length": 8,
    "max_new_tokens": 4,
    "repeats": 1,
    "backend": "eager",
    "threads": 1,
}
FUSED = "same-size LoRA, fused (GuidedModel)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=f"tiny shapes, traced without inductor: {SMOKE}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 weights (default float32)")
    parser.add_argument("--patients", nargs="+", default=["1.5B", "7B"], choices=list(SHAPES))
    parser.add_argument("--doctor", default="0.5B", choices=list(SHAPES), help="the small doctor's shape")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend of the captured runs")
    parser.add_argument("--mode", default="reduce-overhead", help="torch.compile mode (CUDA graphs)")
    parser.add_argument("--no-captured", action="store_true", help="eager rows only")
    parser.add_argument("--output", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    return args


def random_model(shape: str, dtype: torch.dtype, seed: int, device) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(**SHAPES[shape], rope_theta=1e6, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return Qwen2ForCausalLM(config).to(dtype).to(device).eval()


def step_bytes(model, rows: int, length: int) -> float:
    """Bytes one decoding step reads: every weight (an untied input embedding only gathers `rows` rows) and the KV
    cache of `rows` sequences of `length` tokens."""
    config = model.config.get_text_config()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    if not config.tie_word_embeddings:
        weights -= embedding.numel() * embedding.element_size()
    return weights + kv_cache_megabytes(model, rows, length) * 1e6


def lora_bytes(doctor) -> float:
    return sum(p.numel() * p.element_size() for name, p in doctor.named_parameters() if "lora_" in name)


def variants(args, patient, small, small_lora, same_lora, fused, compile_config):
    """name -> (the model `generate` runs on, its processor factory, the bytes a step reads beyond the patient's as a
    function of (rows, mean length))."""
    processor = functools.partial(DoctorLogitsProcessor, betas=args.beta, compile_doctors=compile_config or False)
    rows = {
        "plain": (patient, no_processor, lambda r, n: 0.0),
        f"{args.doctor} full doctor": (
            patient, functools.partial(processor, small, references="none"), lambda r, n: step_bytes(small, r, n)
        ),
        f"{args.doctor} LoRA doctor + its base": (
            patient,
            functools.partial(processor, small_lora, references="initial"),
            lambda r, n: step_bytes(small, 2 * r, n) + lora_bytes(small_lora),
        ),
        "same-size LoRA, processor": (
            patient,
            functools.partial(processor, same_lora, references="patient"),
            lambda r, n: step_bytes(patient, r, n) + lora_bytes(same_lora),
        ),
    }  # fmt: skip
    if compile_config is None:
        doctor_rows_kv = lambda r, n: kv_cache_megabytes(patient, r, n) * 1e6  # noqa: E731
        rows[FUSED] = (fused, no_processor, lambda r, n: doctor_rows_kv(r, n) + lora_bytes(same_lora))
    return rows


def run_patient(args, shape: str, dtype, device) -> list[dict]:
    """Every variant at every batch size, eager then captured, for one patient shape."""
    patient = random_model(shape, dtype, 0, device)
    small = random_model(args.doctor, dtype, 1, device)
    small_lora, same_lora = lora_copy(small).to(device), lora_copy(patient).to(device)
    fused = GuidedModel(patient, same_lora, betas=args.beta)  # outside its calls the patient is untouched
    mode = None if args.backend == "eager" else args.mode  # dynamo's eager backend takes no mode
    captures = [None] if args.no_captured else [None, CompileConfig(backend=args.backend, mode=mode)]
    records = []
    for batch_size in args.batch_sizes:
        ids = torch.randint(2, SHAPES[shape]["vocab_size"] - 1, (batch_size, args.prompt_length))
        inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids, device=device)}
        for compile_config in captures:
            doctors = (small, small_lora, same_lora, fused)
            records += time_variants(args, shape, batch_size, inputs, device, compile_config, patient, *doctors)
    return records


def time_variants(args, shape, batch_size, inputs, device, compile_config, patient, *doctors) -> list[dict]:
    generate_kwargs = {"pad_token_id": 0}
    if compile_config is not None:
        generate_kwargs |= {"cache_implementation": "static", "compile_config": compile_config}
        if device.type != "cuda":
            compile_config._compile_all_devices = True  # transformers compiles generate on CUDA only by default
    rows = variants(args, patient, *doctors, compile_config)
    times = {name: [] for name in rows}
    for model, make_processor, _ in rows.values():  # warm-up (and compilation)
        proc = build_processor(make_processor, inputs)
        time_generate(model, inputs, proc, min(args.max_new_tokens, 8), device, **generate_kwargs)
    for _ in range(args.repeats):
        for name, (model, make_processor, _) in rows.items():
            proc = build_processor(make_processor, inputs)
            times[name].append(time_generate(model, inputs, proc, args.max_new_tokens, device, **generate_kwargs))
    mean_length = args.prompt_length + args.max_new_tokens / 2
    patient_bytes = step_bytes(patient, batch_size, mean_length)
    plain = min(times["plain"])
    return [
        {
            "patient": shape,
            "doctor": args.doctor,
            "batch_size": batch_size,
            "captured": compile_config is not None,
            "variant": name,
            "min_s": min(times[name]),
            "median_s": statistics.median(times[name]),
            "tokens_per_s": batch_size * args.max_new_tokens / min(times[name]),
            "x_plain": min(times[name]) / plain,
            "bound_x": 1 + extra(batch_size, mean_length) / patient_bytes,
        }
        for name, (_, _, extra) in rows.items()
    ]


def print_table(records: list[dict]) -> None:
    header = (
        f"{'patient':>7s} {'batch':>5s} {'mode':>8s} {'variant':36s} {'min s':>8s} {'tok/s':>9s} {'x plain':>8s} "
        f"{'bound x':>8s}"
    )
    print(header)
    print("-" * len(header))
    for r in records:
        mode = "captured" if r["captured"] else "eager"
        print(
            f"{r['patient']:>7s} {r['batch_size']:5d} {mode:>8s} {r['variant']:36s} {r['min_s']:8.3f} "
            f"{r['tokens_per_s']:9.1f} {r['x_plain']:8.2f} {r['bound_x']:8.2f}"
        )
    eager_plain = {
        (r["patient"], r["batch_size"]): r for r in records if r["variant"] == "plain" and not r["captured"]
    }
    for r in records:
        if r["variant"] == "plain" and r["captured"]:
            gain = r["tokens_per_s"] / eager_plain[(r["patient"], r["batch_size"])]["tokens_per_s"]
            print(f"captured plain / eager plain, {r['patient']} batch {r['batch_size']}: {gain:.2f}x tokens/s")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    print(
        f"{dtype}, device {device}, threads {torch.get_num_threads()}, doctor {args.doctor}, prompt "
        f"{args.prompt_length}, {args.max_new_tokens} new tokens, greedy, beta {args.beta}, repeats {args.repeats}, "
        f"captured: backend {args.backend}" + ("" if args.backend == "eager" else f", mode {args.mode}")
    )
    records = []
    for shape in args.patients:
        records += run_patient(args, shape, dtype, device)
        if args.output:  # written as each patient finishes
            Path(args.output).write_text(json.dumps(records, indent=2))
    print_table(records)


if __name__ == "__main__":
    main()
