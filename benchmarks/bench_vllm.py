"""Guided serving throughput: vLLM with the doctor inside the engine, against plain vLLM and against guided
`generate()`, on the same work (a batch of requests, a fixed number of new tokens each, greedy).

One vLLM engine (CPU build, in this process) holds three doctors of the embedded SmolLM2-135M patient, and each
request weights one of them (`doctor_betas=[beta, 0, 0]`, ...), so a doctor does work only for its own requests:

- same size: a full copy of the patient (weights perturbed), no reference: one more forward of the patient's cost
  per step, so the bound is about 0.5x plain;
- a third: the patient truncated to the layers that make a third of its parameters, no reference;
- LoRA + initial: the kind `TFPOTrainer` saves (r = 16, every linear layer, random `lora_B`) with its base as the
  reference (adapter and base rows in one forward): reported, no target.

Plain vLLM is the same engine's requests without `doctor_betas` (they cost the doctors nothing). Guided `generate()`
runs the patient in transformers with `DoctorLogitsProcessor` on the same prompts (left padded, one batch). Rounds
are interleaved over `--repeats`; tokens/s are best-of-rounds (medians beside them). Targets (issue 18, CPU, batch
8 x 64 tokens): same size >= 0.45x plain vLLM, a third >= 0.65x, guided vLLM faster than guided `generate()`. The
re-prefills the doctors made for preempted requests are counted (`--num-gpu-blocks` forces preemptions).

Needs vLLM (`make test-vllm`'s environment, `.venv-vllm`):

    .venv-vllm/bin/python benchmarks/bench_vllm.py             # embedded patient, batch 8 x 64 tokens (minutes)
    .venv-vllm/bin/python benchmarks/bench_vllm.py --smoke     # a tiny random Llama: seconds after vLLM starts
"""
# benchmark-requires: vllm

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")  # the V1 processor interface
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process: its doctors counted
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import PROMPTS, decode_step_time, lora_copy, time_generate  # noqa: E402

from tfpo_hf import DoctorLogitsProcessor  # noqa: E402
from tfpo_hf.doctor.modeling import truncated_causal_lm  # noqa: E402
from tfpo_hf.serving import GuidedRequests  # noqa: E402


PROCESSOR = "tfpo_hf.serving.vllm:DoctorGuidanceLogitsProcessor"
DOCTORS = ("same size", "a third", "LoRA + initial")
REFERENCES = ("none", "none", "initial")
TARGETS = {"same size": 0.45, "a third": 0.65}
SMOKE = {"batch_size": 2, "max_new_tokens": 4, "repeats": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=f"a tiny random Llama patient: {SMOKE}")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for generate()")
    parser.add_argument("--num-gpu-blocks", type=int, default=None, help="vLLM KV-cache blocks (few: preemptions)")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    return args


def save_patient(args, folder: Path) -> Path:
    """The patient's folder: the embedded SmolLM2 (dense, float32), or with `--smoke` a tiny random Llama whose
    head dimension vLLM's CPU attention supports."""
    if not args.smoke:
        from tfpo_hf.utils.embedded_patient import default_patient_gguf_path
        from tfpo_hf.utils.gguf_checkpoints import dense_checkpoint

        return dense_checkpoint(default_patient_gguf_path, "SmolLM2-135M-Instruct-dense")
    from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

    path = folder / "patient"
    tiny_causal_lm(hidden_size=256, num_hidden_layers=6).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def save_doctors(patient, folder: Path) -> list[str]:
    """The three doctors of `DOCTORS`, saved under `folder`; their paths in that order."""
    torch.manual_seed(0)
    same_size = AutoModelForCausalLM.from_config(patient.config).eval()
    same_size.load_state_dict(patient.state_dict())
    with torch.no_grad():
        for parameter in same_size.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02 * parameter.std())
    per_layer = sum(p.numel() for p in patient.model.layers[0].parameters())
    other = sum(p.numel() for p in patient.parameters()) - per_layer * len(patient.model.layers)
    layers = max(1, round((sum(p.numel() for p in patient.parameters()) / 3 - other) / per_layer))
    third = truncated_causal_lm(same_size, layers)
    print(f"a third: the patient's first {layers} of {len(patient.model.layers)} layers")
    paths = [str(folder / name.replace(" ", "_").replace("+", "and")) for name in DOCTORS]
    for model, path in zip((same_size, third, lora_copy(patient)), paths):
        model.save_pretrained(path)
    return paths


def doctor_betas(index: int, beta: float) -> list[float]:
    return [beta if position == index else 0.0 for position in range(len(DOCTORS))]


def time_vllm(llm, prompts, args, betas) -> tuple[float, list[list[int]]]:
    """Seconds of one `llm.generate` over `prompts`, exactly `max_new_tokens` each, and the tokens."""
    from vllm import SamplingParams

    extra = {"doctor_betas": betas} if betas is not None else None
    params = SamplingParams(
        max_tokens=args.max_new_tokens,
        min_tokens=args.max_new_tokens,
        ignore_eos=True,
        temperature=0,
        extra_args=extra,
    )
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = [list(output.outputs[0].token_ids) for output in outputs]
    assert all(len(row) == args.max_new_tokens for row in tokens)
    return seconds, tokens


def time_transformers(patient, inputs, args, processor) -> tuple[float, list[list[int]]]:
    """`time_generate` of exactly `max_new_tokens` per row (processor built outside the clock), and the tokens."""
    new_tokens = []
    seconds = time_generate(patient, inputs, processor, args.max_new_tokens, torch.device("cpu"), new_tokens)
    return seconds, new_tokens[0].tolist()


def record_engine_cores() -> list[GuidedRequests]:
    """A list that will hold the `GuidedRequests` the engine's processor builds (its engine core runs in this
    process; vLLM freezes its objects out of `gc`'s sight, so they are recorded as they are made)."""
    cores, init = [], GuidedRequests.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        cores.append(self)

    GuidedRequests.__init__ = recording_init
    return cores


def main() -> None:
    args = parse_args()
    from vllm import LLM

    folder = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    patient_dir = save_patient(args, folder)
    tokenizer = AutoTokenizer.from_pretrained(patient_dir)
    tokenizer.padding_side = "left"
    patient = AutoModelForCausalLM.from_pretrained(patient_dir, dtype=torch.float32).eval()
    doctor_paths = save_doctors(patient, folder)
    settings = {"doctors": doctor_paths, "references": list(REFERENCES), "dtype": "float32"}
    os.environ["TFPO_HF_DOCTORS"] = json.dumps(settings)
    cores = record_engine_cores()
    engine_kwargs = {"num_gpu_blocks_override": args.num_gpu_blocks} if args.num_gpu_blocks else {}
    llm = LLM(
        str(patient_dir),
        dtype="float32",
        enforce_eager=True,
        logits_processors=[PROCESSOR],
        max_model_len=512,
        seed=0,
        **engine_kwargs,
    )
    torch.set_num_threads(args.threads)
    (core,) = cores

    questions = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch_size)]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def processor(index):
        return DoctorLogitsProcessor(
            doctor_paths[index], betas=args.beta, references=REFERENCES[index], tokenizer=tokenizer
        )

    doctors = [processor(index).doctors[0] for index in range(len(DOCTORS))]  # loaded once: outside the clock
    variants = {"plain vLLM": lambda: time_vllm(llm, prompts, args, None)}
    variants["plain generate()"] = lambda: time_transformers(patient, inputs, args, None)
    for index, name in enumerate(DOCTORS):
        variants[f"vLLM, {name}"] = lambda i=index: time_vllm(llm, prompts, args, doctor_betas(i, args.beta))
        variants[f"generate(), {name}"] = lambda i=index: time_transformers(
            patient,
            inputs,
            args,
            DoctorLogitsProcessor(doctors[i], betas=args.beta, references=REFERENCES[i], tokenizer=tokenizer),
        )
    times = {name: [] for name in variants}
    tokens = {}
    for round_index in range(args.repeats):
        for name, run in variants.items():
            seconds, tokens[name] = run()
            times[name].append(seconds)
            print(f"round {round_index + 1}: {name} {seconds:.2f} s", file=sys.stderr, flush=True)
    report(args, times, tokens, core)
    step_costs(args, patient, doctors, inputs)


def report(args, times: dict, tokens: dict, core: GuidedRequests) -> None:
    """Tokens/s per variant (best and median round), each doctor's ratio to plain vLLM against its target and bound,
    against guided `generate()`, whether the tokens agree, and the doctors' prefills."""
    work = args.batch_size * args.max_new_tokens
    print(f"batch {args.batch_size} x {args.max_new_tokens} new tokens, beta {args.beta}, {args.repeats} rounds")
    print(f"{'variant':<30} {'tok/s best':>10} {'tok/s median':>12} {'vs plain vLLM':>14}")
    plain = work / min(times["plain vLLM"])
    for name, seconds in times.items():
        best, median = work / min(seconds), work / statistics.median(seconds)
        print(f"{name:<30} {best:>10.1f} {median:>12.1f} {best / plain:>13.2f}x")
    for name in DOCTORS:
        vllm_time, generate_time = min(times[f"vLLM, {name}"]), min(times[f"generate(), {name}"])
        same = sum(a == b for a, b in zip(tokens[f"vLLM, {name}"], tokens[f"generate(), {name}"]))
        # The doctor runs in transformers (eager), not in vLLM's kernels: its cost is what it adds to generate().
        bound = min(times["plain vLLM"]) / (min(times["plain vLLM"]) + generate_time - min(times["plain generate()"]))
        ratio = min(times["plain vLLM"]) / vllm_time
        verdict = ""
        if name in TARGETS:
            verdict = f"; target >= {TARGETS[name]:.2f}x: {'met' if ratio >= TARGETS[name] else 'MISSED'}"
        print(
            f"{name}: guided vLLM {ratio:.2f}x plain vLLM{verdict} (bound with the doctor at its generate() cost: "
            f"{bound:.2f}x); {generate_time / vllm_time:.2f}x guided generate() "
            f"({'faster' if vllm_time < generate_time else 'SLOWER'}); rows with tokens equal to generate(): "
            f"{same}/{args.batch_size}"
        )
    print(
        f"doctor prefills (one per request and doctor weighting it): {core.prefills}; "
        f"requests prefilled again after a preemption: {core.resumed}"
    )


def step_costs(args, patient, doctors, inputs) -> None:
    """Each doctor's incremental decode step over the batch `inputs`, relative to the patient's (plain transformers)."""
    repeats = 2 if args.smoke else 20
    patient_step = decode_step_time(patient, inputs, torch.device("cpu"), repeats)
    for name, doctor in zip(DOCTORS, doctors):
        with_base = REFERENCES[DOCTORS.index(name)] == "initial"
        step = decode_step_time(doctor, inputs, torch.device("cpu"), repeats, with_base=with_base)
        print(
            f"{name}: doctor step cost {step / patient_step:.2f} x patient step (bound {1 / (1 + step / patient_step):.2f}x)"
        )


if __name__ == "__main__":
    main()
