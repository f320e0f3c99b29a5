"""`tfpo-hf demo`: the whole method on the embedded SmolLM2-135M-Instruct patient, on a CPU, with a report.

Task: continue the opening of a movie review (320 shipped openings, see `demo/PROVENANCE.md`) in a warm and
positive way, judged by the VADER sentiment analyser (a third-party judge from PyPI).

1. Preference pairs: the patient samples several continuations per training prompt; VADER picks the best as
   `chosen` and the worst as `rejected`.
2. Stage 1: the patient's positive and negative faces score every completion token.
3. Stage 2: a doctor (a LoRA copy of the patient by default, or its first layers) trains with TFPO.
4. Stage 3 and evaluation: held-out prompts are answered by the unguided patient (the baseline of every win rate),
   LLMdoctor at its guidance beta and the baselines (GenARM-style trajectory-level doctor, at the best of its
   baseline betas on validation prompts; DPO via TRL; best-of-N with the judge); the report holds a metrics table,
   sample generations side by side, a score-versus-diversity plot and a token-reward heatmap.

This module holds the run, step by step. Its arguments are in `arguments` (`DemoArguments`), what the steps share in
`context` (`DemoContext`, passed to each step); the steps live in `prompts` (the openings and their split), `pairs`
(preference pairs and stage 1), `doctors` (training the doctors and DPO), `methods` (the compared methods and the
beta choice) and `report` (`results.json`, the plot and `report.md`).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

from ..evaluation import Method, evaluate_methods
from .arguments import DemoArguments
from .context import DemoContext
from .doctors import CROSS_FAMILY, DoctorFamily, load_for_decoding, train_all, train_doctor, train_dpo
from .methods import choose_decoding_betas, evaluated_methods, frontier_methods, guided_method, unguided_method
from .pairs import build_preference_pairs, score_pairs
from .progress import RunProgress
from .prompts import chat, load_prompts, split_prompts
from .report import DemoOutcome, write_outputs


__all__ = [
    "DemoArguments",
    "DemoContext",
    "DoctorFamily",
    "Method",
    "build_preference_pairs",
    "chat",
    "guided_method",
    "load_prompts",
    "run_demo",
    "score_pairs",
    "split_prompts",
    "train_doctor",
    "train_dpo",
    "unguided_method",
]


def run_demo(args: DemoArguments) -> Path:
    """Run the pipeline and write the report directory; returns the path of `report.md`. Each finished step is kept
    under `output_dir/progress` as it ends; with `args.resume` a stopped run picks up from there."""
    context = DemoContext.load(args)
    context.progress = RunProgress(context.output_dir / "progress", asdict(args), resume=args.resume)
    context.resume_records()
    progress = context.progress
    pair_prompts, validation_prompts, eval_prompts = split_prompts(args)
    pairs, pair_stats = progress.dataset(
        "pairs", partial(context.run, "sample and judge preference pairs", build_preference_pairs, pair_prompts)
    )
    print(f"[demo] {pair_stats['pairs']} preference pairs")
    scored, reward_stats = progress.dataset(
        "scored_pairs", partial(context.run, "stage 1 token rewards", score_pairs, pairs)
    )
    print(f"[demo] token rewards: {reward_stats['nonzero_fraction']:.1%} non-zero")
    doctor_folders, dpo_models = train_all(context, pairs, scored)
    doctor_base = context.doctor_base.name_or_path if context.doctor_base is not None else None
    context.doctor_base = context.cross_family_base = None  # trained from; the doctors' base decodes alone later
    doctors = {
        name: load_for_decoding(context, folder, other_family=name == CROSS_FAMILY)
        for name, folder in doctor_folders.items()
    }

    unguided = unguided_method(context)
    with context.timed("beta choice on the validation prompts"):
        decoding_betas, validation_results = choose_decoding_betas(context, doctors, unguided, validation_prompts)
    methods = evaluated_methods(context, unguided, doctors, decoding_betas, dpo_models, doctor_base)
    with context.timed("evaluation"):
        results = evaluate_methods(
            methods, eval_prompts, context.judge, unguided.name, args.seeds, progress.generations_dir / "evaluation"
        )
    frontier = frontier_methods(context, doctors, decoding_betas, dpo_models)
    with context.timed("frontier"):
        frontier_results = (
            evaluate_methods(
                [unguided, *frontier],
                eval_prompts,
                context.judge,
                unguided.name,
                args.seeds,
                progress.generations_dir / "evaluation",
            )[1:]
            if frontier
            else []
        )
    outcome = DemoOutcome(
        results, validation_results, decoding_betas, pair_stats, reward_stats, eval_prompts, frontier_results
    )
    return write_outputs(context, outcome)
