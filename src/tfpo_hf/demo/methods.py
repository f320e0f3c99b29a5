"""The demo's compared methods: the unguided patient (memoized, so best-of-N reuses its samples), the patient guided
by a doctor at a beta, the choice of the GenARM-style doctor's beta on the validation prompts, and the list of
methods of the held-out evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import AutoModelForCausalLM

from ..doctor.modeling import DoctorModel
from ..evaluation import Method, MethodResult, best_of_n_generate_fn, evaluate_methods, patient_generate_fn
from ..guidance.beta_choice import BetaChoice, choose_beta
from ..guidance.logits_process import DoctorLogitsProcessor
from .arguments import DPO_BETA
from .doctors import CROSS_FAMILY, GENARM, LITERAL, LITERAL_BETA, dpo_row_name


if TYPE_CHECKING:
    from .context import DemoContext

UNGUIDED = "patient (sampling)"
DOCTOR_BASE_ALONE = "doctors' base alone (sampling)"  # weak-to-strong runs: the small model, unguided


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
    """Sampling from the patient guided by `doctor` at `beta`, with the doctor's recorded guidance (ratio or mix);
    the doctor of another family reads the conversations in its own tokenizer."""
    patient, tokenizer = context.patient, context.tokenizer
    factory = lambda: DoctorLogitsProcessor(  # noqa: E731
        doctor, betas=beta, tokenizer=tokenizer, doctor_tokenizers=doctor_tokenizer_of(context, family)
    )
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
    cache_dir = context.progress.generations_dir / "validation" if context.progress else None
    results = evaluate_methods(methods, prompts, context.judge, unguided.name, args.seeds[:1], cache_dir)
    best = {}
    for family in doctors:
        candidates = [r for r in results if r.family == family]
        best[family] = max(candidates, key=lambda r: r.mean_score).beta
    return best, results


def doctor_tokenizer_of(context: DemoContext, family: str):
    """The tokenizer of a doctor family's doctor when it is not the patient's (the doctor of another family)."""
    return context.cross_family_tokenizer if family == CROSS_FAMILY else None


def choose_llmdoctor_beta(
    context: DemoContext, doctor: DoctorModel, prompts: list, family: str = "LLMdoctor"
) -> float:
    """LLMdoctor's decoding beta: `args.guidance_beta`, or with `args.choose_guidance_beta` the library's rule (`choose_beta`: the best
    judged of `args.guidance_betas` whose distinct-2 stays >= 0.9x the unguided patient's) on the validation
    `prompts`, first seed. The choice is recorded in the saved doctor (`doctor_config.json`), so it decodes with it by
    default, and kept with the run's progress."""
    args = context.args
    if not args.choose_guidance_beta:
        return args.guidance_beta

    def measure() -> dict:
        choice = choose_beta(
            context.patient,
            context.tokenizer,
            doctor,
            prompts,
            betas=args.guidance_betas,
            judge=context.judge,
            seed=args.seeds[0],
            processor_kwargs={"doctor_tokenizers": doctor_tokenizer_of(context, family)},
            **context.sampling,
        )
        return choice.to_dict()

    other_family = family == CROSS_FAMILY
    record = "cross_family_beta_choice" if other_family else "llmdoctor_beta_choice"
    recorded = context.progress.json(record, measure) if context.progress else measure()
    choice = BetaChoice.from_dict(recorded)
    choice.apply_to(doctor.doctor_config)
    choice.apply_to_folder(context.output_dir / ("cross_family_doctor" if other_family else "doctor"))
    print(f"[demo] {family} beta {choice.beta:g} ({choice.rule})")
    return choice.beta


def choose_decoding_betas(
    context: DemoContext, doctors: dict[str, DoctorModel], unguided: Method, prompts: list
) -> tuple[dict[str, float], list[MethodResult]]:
    """Every doctor family's decoding beta, in report order: LLMdoctor's (`choose_llmdoctor_beta`), the paper-literal
    ablation's `LITERAL_BETA` (not swept, to fit the CPU budget: its betas 1, 2, 4 overlapped in every sweep,
    results.md), and the GenARM-style doctor's best of `args.baseline_betas` by judge score (`choose_betas`); returns
    them with the GenARM-style sweep's validation results."""
    betas = {"LLMdoctor": choose_llmdoctor_beta(context, doctors["LLMdoctor"], prompts)}
    if CROSS_FAMILY in doctors:
        betas[CROSS_FAMILY] = choose_llmdoctor_beta(context, doctors[CROSS_FAMILY], prompts, CROSS_FAMILY)
    if LITERAL in doctors:
        betas[LITERAL] = LITERAL_BETA
    validation_results = []
    if GENARM in doctors:
        chosen, validation_results = choose_betas(context, {GENARM: doctors[GENARM]}, unguided, prompts)
        betas.update(chosen)
    return betas, validation_results


def frontier_methods(
    context: DemoContext,
    doctors: dict[str, DoctorModel],
    decoding_betas: dict[str, float],
    dpo_models: dict[float, dict[str, Path]],
) -> list:
    """The extra points of the score-versus-diversity frontier: the guided families (LLMdoctor, GenARM-style) at
    each of `args.frontier_betas` other than their decoding beta, and the DPO models at each other strength."""
    guided = [
        guided_method(context, f"{name} beta={beta:g}", doctors[name], beta, family=name)
        for name in ("LLMdoctor", GENARM)
        if name in doctors
        for beta in context.args.frontier_betas
        if beta != decoding_betas[name]
    ]
    return guided + [
        method for beta in dpo_models if beta != DPO_BETA for method in dpo_methods(context, dpo_models, beta)
    ]


def sampled_method(
    context: DemoContext, name: str, source: str | os.PathLike, family: str = "", beta: float | None = None
) -> Method:
    """Sampling from the model at `source` alone, in the patient's decoding settings and dtype; the model is loaded
    for each call and released after it (a CPU's memory holds few copies of a large patient). `family` and `beta`
    place a DPO model on the frontier (its DPO strength as the knob)."""

    def generate(prompts, seed):
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=context.patient.dtype).eval()
        return patient_generate_fn(model, context.tokenizer, batch_size=8, **context.sampling)(prompts, seed)

    return Method(name, generate, family=family, beta=beta)


def dpo_methods(context: DemoContext, dpo_models: dict[float, dict[str, Path]], beta: float) -> list[Method]:
    """The DPO models trained at strength `beta` (`train_all`: folders by family, DPO on the patient or on the
    doctors' base), each in its family with `beta` as its knob."""
    return [
        sampled_method(context, dpo_row_name(family, beta), folder, family=family, beta=beta)
        for family, folder in dpo_models.get(beta, {}).items()
    ]


def evaluated_methods(
    context: DemoContext,
    unguided: Method,
    doctors: dict[str, DoctorModel],
    decoding_betas: dict[str, float],
    dpo_models: dict[float, dict[str, Path]],
    doctor_base: str | os.PathLike | None = None,
) -> list[Method]:
    """The held-out evaluation's methods, in report order: the unguided patient, each doctor family at its decoding
    beta, then the doctors' base alone (`doctor_base`, weak-to-strong runs), the DPO models and best-of-N with the
    judge when asked for."""
    args = context.args
    methods = [unguided] + [
        guided_method(context, f"{name} beta={beta:g}", doctors[name], beta, family=name)
        for name, beta in decoding_betas.items()
    ]
    if doctor_base is not None:
        methods.append(sampled_method(context, DOCTOR_BASE_ALONE, doctor_base))
    methods += dpo_methods(context, dpo_models, DPO_BETA)
    if args.best_of_n:
        best_of_n = best_of_n_generate_fn(unguided.generate, context.judge, args.best_of_n)
        methods.append(Method(f"best-of-{args.best_of_n} (judge)", best_of_n))
    return methods
