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

from pathlib import Path

from ..evaluation import Method, evaluate_methods
from .arguments import DemoArguments
from .context import DemoContext
from .doctors import LITERAL, LITERAL_BETA, DoctorFamily, train_all, train_doctor, train_dpo
from .methods import choose_genarm_beta, evaluated_methods, guided_method, unguided_method
from .pairs import build_preference_pairs, score_pairs
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
    """Run the pipeline and write the report directory; returns the path of `report.md`."""
    context = DemoContext.load(args)
    pair_prompts, validation_prompts, eval_prompts = split_prompts(args)
    step = "sample and judge preference pairs"
    with context.timed(step):
        pairs, pair_stats = build_preference_pairs(context, pair_prompts)
    print(f"[demo] {pair_stats['pairs']} preference pairs ({context.timings[step]:.0f} s)")
    with context.timed("stage 1 token rewards"):
        scored, reward_stats = score_pairs(context, pairs)
    print(f"[demo] token rewards: {reward_stats['nonzero_fraction']:.1%} non-zero")
    doctors, dpo_model = train_all(context, pairs, scored)

    unguided = unguided_method(context)
    with context.timed("beta choice on the validation prompts"):
        chosen_betas, validation_results = choose_genarm_beta(context, doctors, unguided, validation_prompts)
    if args.ablation:  # not swept, to fit the CPU budget: its betas 1, 2, 4 overlapped in every sweep (results.md)
        chosen_betas = {LITERAL: LITERAL_BETA, **chosen_betas}
    methods = evaluated_methods(context, unguided, doctors, chosen_betas, dpo_model)
    with context.timed("evaluation"):
        results = evaluate_methods(methods, eval_prompts, context.judge, baseline=unguided.name, seeds=args.seeds)
    outcome = DemoOutcome(results, validation_results, chosen_betas, pair_stats, reward_stats, eval_prompts)
    return write_outputs(context, outcome)
