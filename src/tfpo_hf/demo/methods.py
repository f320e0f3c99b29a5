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
    from .pipeline import DemoArguments

UNGUIDED = "patient (sampling)"


def sampling_settings(args: DemoArguments) -> dict:
    """The `generate` keywords of every sampled method."""
    return dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)


def memoized(generate):
    """A `Method.generate` that remembers its texts per (prompts, seed): best-of-N then reuses the unguided samples."""
    cache: dict = {}

    def cached(prompts, seed):
        key = (json.dumps(prompts), seed)
        if key not in cache:
            cache[key] = generate(prompts, seed)
        return cache[key]

    return cached


def unguided_method(patient: PreTrainedModel, tokenizer, sampling: dict) -> Method:
    """Sampling from the patient alone: the baseline of every win rate."""
    return Method(UNGUIDED, memoized(patient_generate_fn(patient, tokenizer, batch_size=8, **sampling)))


def guided_method(name: str, doctor: DoctorModel, beta: float, patient, tokenizer, sampling: dict, family: str = ""):
    """Sampling from the patient guided by `doctor` at `beta`, with the doctor's recorded guidance (ratio or mix)."""
    factory = lambda: DoctorLogitsProcessor(doctor, betas=beta, tokenizer=tokenizer)  # noqa: E731
    generate = patient_generate_fn(patient, tokenizer, batch_size=8, processor_factory=factory, **sampling)
    return Method(name, generate, family=family, beta=beta)


def choose_betas(
    doctors: dict[str, DoctorModel],
    unguided: Method,
    patient,
    tokenizer,
    prompts,
    judge,
    args: DemoArguments,
    sampling: dict,
) -> tuple[dict[str, float], list]:
    """Each doctor family's best beta of `args.betas` by mean judge score on the validation prompts (first seed);
    returns the choices and every validation result (for the report)."""
    methods = [unguided] + [
        guided_method(f"{family} beta={beta:g}", doctor, beta, patient, tokenizer, sampling, family=family)
        for family, doctor in doctors.items()
        for beta in args.betas
    ]
    results = evaluate_methods(methods, prompts, judge, baseline=unguided.name, seeds=args.seeds[:1])
    best = {}
    for family in doctors:
        candidates = [r for r in results if r.family == family]
        best[family] = max(candidates, key=lambda r: r.mean_score).beta
    return best, results


def choose_genarm_beta(
    doctors: dict[str, DoctorModel], unguided: Method, patient, tokenizer, prompts, judge, args, sampling: dict
) -> tuple[dict[str, float], list[MethodResult]]:
    """`choose_betas` for the GenARM-style doctor alone (LLMdoctor keeps its default beta); nothing without it."""
    swept = {name: doctor for name, doctor in doctors.items() if name == GENARM}
    if not swept:
        return {}, []
    return choose_betas(swept, unguided, patient, tokenizer, prompts, judge, args, sampling)


def evaluated_methods(
    unguided: Method,
    doctors: dict[str, DoctorModel],
    chosen_betas: dict[str, float],
    dpo_model: PreTrainedModel | None,
    patient,
    tokenizer,
    judge,
    args: DemoArguments,
    sampling: dict,
) -> list[Method]:
    """The held-out evaluation's methods, in report order: the unguided patient, LLMdoctor at its default beta, each
    other doctor family at its chosen beta, then DPO and best-of-N with the judge when asked for."""
    decoding_betas = {"LLMdoctor": args.beta, **chosen_betas}
    methods = [unguided] + [
        guided_method(f"{name} beta={beta:g}", doctors[name], beta, patient, tokenizer, sampling, family=name)
        for name, beta in decoding_betas.items()
    ]
    if args.baselines:
        methods.append(Method(DPO, patient_generate_fn(dpo_model, tokenizer, batch_size=8, **sampling)))
    if args.best_of_n:
        best_of_n = best_of_n_generate_fn(unguided.generate, judge, args.best_of_n)
        methods.append(Method(f"best-of-{args.best_of_n} (judge)", best_of_n))
    return methods
