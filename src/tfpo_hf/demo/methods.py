"""The demo's compared methods: the unguided patient (memoized, so best-of-N reuses its samples), the patient guided
by a doctor at a beta, the choice of the GenARM-style doctor's beta on the validation prompts, and the list of
methods of the held-out evaluation."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from transformers import PreTrainedModel

from ..doctor.modeling import DoctorModel
from ..evaluation import Method, MethodResult, best_of_n_generate_fn, evaluate_methods, patient_generate_fn
from ..guidance.logits_process import DoctorLogitsProcessor
from .doctors import DPO, GENARM


if TYPE_CHECKING:
    from .context import DemoContext

UNGUIDED = "patient (sampling)"


def memoized(generate):
    """A `Method.generate` that remembers its texts per (prompts, seed): best-of-N then reuses the unguided samples."""
    cache: dict = {}

    def cached(prompts, seed):
        key = (json.dumps(prompts), seed)
        if key not in cache:
            cache[key] = generate(prompts, seed)
        return cache[key]

    return cached


def unguided_method(context: DemoContext) -> Method:
    """Sampling from the patient alone: the baseline of every win rate."""
    generate = patient_generate_fn(context.patient, context.tokenizer, batch_size=8, **context.sampling)
    return Method(UNGUIDED, memoized(generate))


def guided_method(context: DemoContext, name: str, doctor: DoctorModel, beta: float, family: str = "") -> Method:
    """Sampling from the patient guided by `doctor` at `beta`, with the doctor's recorded guidance (ratio or mix)."""
    patient, tokenizer = context.patient, context.tokenizer
    factory = lambda: DoctorLogitsProcessor(doctor, betas=beta, tokenizer=tokenizer)  # noqa: E731
    generate = patient_generate_fn(patient, tokenizer, batch_size=8, processor_factory=factory, **context.sampling)
    return Method(name, generate, family=family, beta=beta)


def choose_betas(
    context: DemoContext, doctors: dict[str, DoctorModel], unguided: Method, prompts: list
) -> tuple[dict[str, float], list[MethodResult]]:
    """Each doctor family's best beta of `args.baseline_betas` by mean judge score on the validation `prompts` (first
    seed); returns the choices and every validation result (for the report)."""
    args = context.args
    methods = [unguided] + [
        guided_method(context, f"{family} beta={beta:g}", doctor, beta, family=family)
        for family, doctor in doctors.items()
        for beta in args.baseline_betas
    ]
    results = evaluate_methods(methods, prompts, context.judge, baseline=unguided.name, seeds=args.seeds[:1])
    best = {}
    for family in doctors:
        candidates = [r for r in results if r.family == family]
        best[family] = max(candidates, key=lambda r: r.mean_score).beta
    return best, results


def choose_genarm_beta(
    context: DemoContext, doctors: dict[str, DoctorModel], unguided: Method, prompts: list
) -> tuple[dict[str, float], list[MethodResult]]:
    """`choose_betas` for the GenARM-style doctor alone (LLMdoctor keeps its guidance beta); nothing without it."""
    swept = {name: doctor for name, doctor in doctors.items() if name == GENARM}
    if not swept:
        return {}, []
    return choose_betas(context, swept, unguided, prompts)


def evaluated_methods(
    context: DemoContext,
    unguided: Method,
    doctors: dict[str, DoctorModel],
    chosen_betas: dict[str, float],
    dpo_model: PreTrainedModel | None,
) -> list[Method]:
    """The held-out evaluation's methods, in report order: the unguided patient, LLMdoctor at its guidance beta, each
    other doctor family at its chosen beta, then DPO and best-of-N with the judge when asked for."""
    args = context.args
    decoding_betas = {"LLMdoctor": args.guidance_beta, **chosen_betas}
    methods = [unguided] + [
        guided_method(context, f"{name} beta={beta:g}", doctors[name], beta, family=name)
        for name, beta in decoding_betas.items()
    ]
    if args.baselines:
        generate = patient_generate_fn(dpo_model, context.tokenizer, batch_size=8, **context.sampling)
        methods.append(Method(DPO, generate))
    if args.best_of_n:
        best_of_n = best_of_n_generate_fn(unguided.generate, context.judge, args.best_of_n)
        methods.append(Method(f"best-of-{args.best_of_n} (judge)", best_of_n))
    return methods
