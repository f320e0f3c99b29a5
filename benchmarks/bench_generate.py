"""Guided generation overhead: tokens/s of `generate()` with `DoctorLogitsProcessor` against plain `generate()`.

All variants run side by side in one process on the same patient, prompts (chat template, left padded) and number of
new tokens (greedy, `min_new_tokens = max_new_tokens`), interleaved over `--repeats` rounds; times are min and median.
As a user would, every timed `generate` call gets a processor built for it (with that call's attention mask); the
construction is outside the timed region and printed apart (`build ms`, the minimum over the calls).

The target for a guided run is `(1 + doctor step / patient step) * plain time + 10%`, where a step is one incremental
decode forward with a KV cache over the prompt batch, timed alone for each model: guidance should cost one doctor
forward per token and little else. The no-cache reference processor (tests/helpers/reference_guidance.py,
re-running the doctor over the whole prefix at every token) generates only `--reference-tokens` tokens: its cost
grows with length.

Ratio guidance with a LoRA copy of the patient (r = 16 on every linear layer, random adapter weights) is timed two
ways: against the patient as reference (`references="patient"`: no forward beyond the doctor's) and against the
doctor's base with the adapter disabled (`references="base"`, what a LoRA doctor of a *different* model needs: the
adapter's rows and the base's rows in one cached forward, twice the rows of the first).

    python benchmarks/bench_generate.py                 # SmolLM2-135M-Instruct (load_default_patient), fp32
    python benchmarks/bench_generate.py --bf16 --max-new-tokens 64
    python benchmarks/bench_generate.py --smoke         # tiny random models, batch 2, 4 new tokens: seconds

The last table compares the fused path (`tfpo_hf.guidance.guided_model.GuidedModel`: patient rows and LoRA-doctor rows in one
forward over the shared weights) with the processor on the same LoRA doctor, at several batch sizes: time as a
multiple of plain `generate()`, the fraction of greedy tokens that differ, and the KV cache each holds.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import LogitsProcessorList


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.helpers
from tests.helpers.reference_guidance import ReferenceGuidanceProcessor  # noqa: E402
from tfpo_hf.doctor.modeling import truncated_causal_lm  # noqa: E402
from tfpo_hf.guidance.cached_forward import Stream, new_cache, rows_of  # noqa: E402
from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor  # noqa: E402


PROMPTS = [
    "Give me three tips for a good night's sleep.",
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain in two sentences why the sky is blue.",
    "How do I boil an egg?",
    "Name a famous painting and its painter.",
    "Suggest a name for a small coffee shop.",
    "What does a compiler do?",
]
# --smoke: the tiny random models of tfpo_hf.testing and these sizes (explicit flags still win over them).
SMOKE = {
    "batch_size": 2,
    "max_new_tokens": 4,
    "reference_tokens": 2,
    "repeats": 1,
    "fused_batch_sizes": [1, 2],
    "threads": 1,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--smoke", action="store_true", help=f"a run of seconds on tiny random models, what the tests run: {SMOKE}"
    )
    parser.add_argument("--patient", default=None, help="local model folder instead of the embedded SmolLM2")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="with --patient: random weights of that architecture (same cost, nothing to load)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 weights (default float32)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--reference-tokens", type=int, default=8, help="new tokens for the no-cache reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument(
        "--fused-batch-sizes",
        type=int,
        nargs="*",
        default=[1, 4, 16],
        help="batch sizes of the fused-path table (GuidedModel against the processor); none skips it",
    )
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_models(args, dtype):
    if args.smoke:
        from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

        patient, tokenizer = tiny_causal_lm(hidden_size=64, num_hidden_layers=8).to(dtype), tiny_tokenizer()
    elif args.patient:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tfpo_hf.testing import random_causal_lm_like

        tokenizer = AutoTokenizer.from_pretrained(args.patient)
        if args.random_weights:
            patient = random_causal_lm_like(args.patient, dtype=dtype)
        else:
            patient = AutoModelForCausalLM.from_pretrained(args.patient, dtype=dtype).eval()
    else:
        from tfpo_hf.utils.embedded_patient import load_default_patient

        patient, tokenizer = load_default_patient(dtype=dtype)
    tokenizer.padding_side = "left"
    return patient, tokenizer


def no_processor(attention_mask) -> None:
    """The processor factory of plain `generate()`."""
    return None


def build_processor(make_processor, inputs, build_times: list | None = None):
    """A processor for one `generate` call over `inputs`, built as a user would (fresh, with that call's attention
    mask); the seconds it took are appended to `build_times` when given."""
    start = time.perf_counter()
    processor = make_processor(attention_mask=inputs["attention_mask"])
    if build_times is not None:
        build_times.append(time.perf_counter() - start)
    return processor


def time_generate(
    patient, inputs, processor, new_tokens: int, device, tokens: list | None = None, **generate_kwargs
) -> float:
    """Seconds of one greedy `generate` of exactly `new_tokens` tokens; `patient` may be a `GuidedModel`; `processor`
    serves this one call (built by the caller, outside the clock). The new tokens are appended to `tokens` when
    given; `generate_kwargs` go to `generate` (a static cache and its `compile_config`, ...)."""
    kwargs = {"logits_processor": LogitsProcessorList([processor])} if processor is not None else {}
    kwargs |= generate_kwargs
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = patient.generate(
            **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kwargs
        )
    synchronize(device)
    assert out.shape[1] - inputs["input_ids"].shape[1] == new_tokens
    if tokens is not None:
        tokens.append(out[:, inputs["input_ids"].shape[1] :])
    return time.perf_counter() - start


@torch.no_grad()
def decode_step_time(model, inputs, device, repeats: int = 20, with_base: bool = False) -> float:
    """Minimum time of one incremental forward (one new token per row) over the prompt batch's KV cache. With
    `with_base`, a LoRA model's step as the processor runs it with its base as reference: the batch twice, adapter
    rows then base rows, in one forward (`rows_of`)."""
    stream = Stream(model, with_base=with_base)
    cache = new_cache(stream)
    rows = rows_of(stream, cache, len(inputs["input_ids"]))
    inputs = {name: tensor.repeat(stream.outputs, 1) for name, tensor in inputs.items()}
    cache_kwarg = {stream.cache_kwarg(): cache}  # the name the (wrapped) model takes: renamed during 5.x
    mask = inputs["attention_mask"]
    with rows:
        model(**inputs, **cache_kwarg, use_cache=True, logits_to_keep=1)
        if cache.get_seq_length() != inputs["input_ids"].shape[1]:
            raise RuntimeError(f"{type(model).__name__} did not fill the KV cache passed as {list(cache_kwarg)}")
        step_ids = inputs["input_ids"][:, -1:]
        step_mask = torch.cat([mask, mask.new_ones((len(mask), 1))], dim=-1)
        position_ids = mask.sum(-1, keepdim=True)
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            model(
                input_ids=step_ids, attention_mask=step_mask, position_ids=position_ids, **cache_kwarg,
                use_cache=True, logits_to_keep=1,
            )  # fmt: skip
            synchronize(device)
            times.append(time.perf_counter() - start)
            cache.crop(-1)
    return min(times)


def lora_copy(patient):
    """A LoRA (r = 16, all linear layers) copy of the patient with random adapter weights, as a trained doctor has."""
    from peft import LoraConfig, get_peft_model

    doctor = get_peft_model(copy.deepcopy(patient), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in doctor.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator).to(parameter.dtype) * 0.01)
    return doctor.eval()


def encode_prompts(tokenizer, batch_size: int, device):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    return tokenizer(texts, return_tensors="pt", padding=True).to(device)


def kv_cache_megabytes(model, rows: int, length: int) -> float:
    """Keys and values of every layer for `rows` sequences of `length` tokens, in MB."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    elements = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * rows * length
    return elements * next(model.parameters()).element_size() / 1e6


def fused_table(args, patient, tokenizer, lora_doctor, device) -> None:
    """Plain, processor (ratio against the patient) and fused `GuidedModel` with the same LoRA doctor, per batch size,
    interleaved; the fused and processor tokens are compared (greedy, float arithmetic may differ in the last bits)."""
    from tfpo_hf.guidance.guided_model import GuidedModel

    guided = GuidedModel(copy.deepcopy(patient), lora_doctor, betas=args.beta)
    routed = GuidedModel(copy.deepcopy(patient), lora_doctor, betas=args.beta)
    routed._row_maskable = False  # the path of adapters a row mask cannot take: PEFT's per-row adapter names
    print(
        f"\nfused path (GuidedModel: patient + LoRA doctor in one forward; rows through row masks, and through PEFT's "
        f"per-row adapter names as 'routed') vs the processor, same doctor, ratio guidance against the patient, "
        f"beta {args.beta}, {args.max_new_tokens} new tokens"
    )
    header = (
        f"{'batch':>5s} {'plain s':>8s} {'processor s':>12s} {'fused s':>8s} {'processor x':>12s} "
        f"{'fused x':>8s} {'routed x':>9s} {'tokens differing':>17s} {'KV cache MB plain / fused':>26s}"
    )
    print(header)
    print("-" * len(header))
    for batch_size in args.fused_batch_sizes:
        inputs = encode_prompts(tokenizer, batch_size, device)
        processor = functools.partial(DoctorLogitsProcessor, lora_doctor, betas=args.beta, references="patient")
        runs = {
            "plain": (patient, no_processor),
            "processor": (patient, processor),
            "fused": (guided, no_processor),
            "routed": (routed, no_processor),
        }
        times, tokens = {name: [] for name in runs}, {name: [] for name in runs}
        for model, make_processor in runs.values():  # warm-up
            time_generate(model, inputs, build_processor(make_processor, inputs), 2, device)
        for _ in range(args.repeats):
            for name, (model, make_processor) in runs.items():
                proc = build_processor(make_processor, inputs)
                times[name].append(time_generate(model, inputs, proc, args.max_new_tokens, device, tokens[name]))
        plain = min(times["plain"])
        differing = (tokens["fused"][0] != tokens["processor"][0]).float().mean().item()
        length = inputs["input_ids"].shape[1] + args.max_new_tokens
        cache = kv_cache_megabytes(patient, batch_size, length)
        print(
            f"{batch_size:5d} {plain:8.3f} {min(times['processor']):12.3f} {min(times['fused']):8.3f} "
            f"{min(times['processor']) / plain:12.2f} {min(times['fused']) / plain:8.2f} "
            f"{min(times['routed']) / plain:9.2f} {differing:17.1%} "
            f"{cache:12.1f} / {2 * cache:.1f}"
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    patient, tokenizer = load_models(args, dtype)
    patient.to(device)
    num_layers = patient.config.num_hidden_layers
    doctors = {
        "same size": copy.deepcopy(patient),
        f"{max(1, num_layers // 4)}/{num_layers} layers": truncated_causal_lm(patient, max(1, num_layers // 4)),
    }

    inputs = encode_prompts(tokenizer, args.batch_size, device)

    # Each variant: a factory of the processor of one generate call (given that call's attention mask), new tokens.
    variants = {"plain": (no_processor, args.max_new_tokens)}
    for name, doctor in doctors.items():
        processor = functools.partial(DoctorLogitsProcessor, doctor, betas=args.beta, tokenizer=tokenizer)
        variants[f"guided, doctor {name}"] = (processor, args.max_new_tokens)
    lora_doctor = lora_copy(patient)
    for reference_kind in ("patient", "base"):
        processor = functools.partial(
            DoctorLogitsProcessor, lora_doctor, betas=args.beta, tokenizer=tokenizer, references=reference_kind
        )
        variants[f"ratio, LoRA doctor, reference {reference_kind}"] = (processor, args.max_new_tokens)
    reference = functools.partial(ReferenceGuidanceProcessor, [doctors["same size"]], [args.beta])
    variants["no-cache reference, doctor same size"] = (reference, args.reference_tokens)

    times, build_times = {name: [] for name in variants}, {name: [] for name in variants}
    for make_processor, new_tokens in variants.values():  # warm-up
        time_generate(patient, inputs, build_processor(make_processor, inputs), min(new_tokens, 4), device)
    for _ in range(args.repeats):
        for name, (make_processor, new_tokens) in variants.items():
            processor = build_processor(make_processor, inputs, build_times[name])
            times[name].append(time_generate(patient, inputs, processor, new_tokens, device))

    patient_step = decode_step_time(patient, inputs, device)
    step_ratio = {name: decode_step_time(doctor, inputs, device) / patient_step for name, doctor in doctors.items()}
    lora_step_ratio = decode_step_time(lora_doctor, inputs, device) / patient_step
    lora_with_base_ratio = decode_step_time(lora_doctor, inputs, device, with_base=True) / patient_step

    model_name = "tiny random Llama" if args.smoke else args.patient or "SmolLM2-135M-Instruct"
    model_name += " (random weights)" if args.patient and args.random_weights else ""
    print(
        f"patient {model_name} ({num_layers} layers), {dtype}, device {device}, threads {torch.get_num_threads()}, "
        f"batch {args.batch_size}, prompt length {inputs['input_ids'].shape[1]} (left padded), greedy, "
        f"beta {args.beta}, repeats {args.repeats}"
    )
    plain_time = min(times["plain"])
    header = (
        f"{'variant':44s} {'tokens':>6s} {'min s':>8s} {'median s':>9s} {'tok/s':>8s} {'x plain':>8s} {'build ms':>9s}"
    )
    print(header)
    print("-" * len(header))
    for name, (_, new_tokens) in variants.items():
        best, median = min(times[name]), statistics.median(times[name])
        tokens = new_tokens * args.batch_size
        per_token_ratio = (best / new_tokens) / (plain_time / args.max_new_tokens)
        row = f"{name:44s} {tokens:6d} {best:8.3f} {median:9.3f} {tokens / best:8.1f} {per_token_ratio:8.2f}"
        print(row if name == "plain" else f"{row} {min(build_times[name]) * 1e3:9.2f}")
    print()
    print(f"one decode step with a KV cache: patient {patient_step * 1e3:.2f} ms")
    for name in doctors:
        guided = min(times[f"guided, doctor {name}"])
        bound = (1 + step_ratio[name]) * plain_time * 1.10
        print(
            f"doctor {name}: step cost {step_ratio[name]:.2f} x patient; target bound (1 + {step_ratio[name]:.2f}) x "
            f"plain + 10% = {bound:.3f} s; guided {guided:.3f} s = {guided / bound:.2f} x bound "
            f"({'within' if guided <= bound else 'over'})"
        )
    for reference_kind, doctor_step in (("patient", lora_step_ratio), ("base", lora_with_base_ratio)):
        guided = min(times[f"ratio, LoRA doctor, reference {reference_kind}"])
        bound = (1 + doctor_step) * plain_time * 1.10
        print(
            f"LoRA doctor, reference {reference_kind}: {1 + doctor_step:.2f} patient steps per token (doctor step "
            f"{doctor_step:.2f} x patient{', adapter and base rows in one forward' if reference_kind == 'base' else ''}); "
            f"bound {bound:.3f} s; guided {guided:.3f} s = {guided / bound:.2f} x bound "
            f"({'within' if guided <= bound else 'over'})"
        )
    print(
        f"(the no-cache reference generated {args.reference_tokens} tokens per row, not {args.max_new_tokens}; its "
        "'x plain' column compares time per token)"
    )
    if args.fused_batch_sizes:
        fused_table(args, patient, tokenizer, lora_doctor, device)


if __name__ == "__main__":
    main()
