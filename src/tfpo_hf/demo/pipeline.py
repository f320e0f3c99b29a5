"""`tfpo-hf demo`: the whole method on the embedded SmolLM2-135M-Instruct patient, on a CPU, with a report.

Task: continue the opening of a movie review (320 shipped openings, see `demo/PROVENANCE.md`) in a warm and
positive way, judged by the VADER sentiment analyser (a third-party judge from PyPI).

1. Preference pairs: the patient samples several continuations per training prompt; VADER picks the best as
   `chosen` and the worst as `rejected`.
2. Stage 1: the patient's positive and negative faces score every response token.
3. Stage 2: a doctor (a LoRA copy of the patient by default, or its first layers) trains with TFPO.
4. Stage 3 and evaluation: held-out prompts are answered by the unguided patient, LLMdoctor at several betas and
   the baselines (GenARM-style trajectory-level doctor, DPO via TRL, best-of-N with the judge); the report holds a
   metrics table, sample generations side by side, a score-versus-diversity plot and a token-reward heatmap.

This module holds the demo's arguments and the run, step by step; the steps live in `prompts` (the openings and
their split), `pairs` (preference pairs and stage 1), `doctors` (training the doctors and DPO), `methods` (the
compared methods and the beta choice) and `report` (`report.md`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..evaluation import (
    Method,
    evaluate_methods,
    get_judge,
    plot_score_vs_diversity,
    results_table,
    write_results_json,
)
from ..training.config import DEFAULT_GUIDANCE_BETA
from ..utils.embedded_patient import DTYPES, load_default_patient
from .doctors import LITERAL, LITERAL_BETA, DoctorRun, train_all, train_doctor, train_dpo
from .methods import choose_genarm_beta, evaluated_methods, guided_method, memoized, sampling_settings, unguided_method
from .pairs import build_preference_pairs, score_pairs
from .prompts import chat, load_prompts, split_prompts
from .report import DemoOutcome, write_report


__all__ = [
    "DemoArguments",
    "DoctorRun",
    "Method",
    "build_preference_pairs",
    "chat",
    "guided_method",
    "load_prompts",
    "memoized",
    "run_demo",
    "score_pairs",
    "split_prompts",
    "train_doctor",
    "train_dpo",
]

DEMO_LEARNING_RATE = 5e-4  # measured with the betas on the validation prompts: docs/results.md


@dataclass
class DemoArguments:
    """The options of `tfpo-hf demo` (sizes, training, decoding and the judge); `quick` shrinks the sizes."""

    output_dir: str = field(default="tfpo_demo", metadata={"help": "Report directory."})
    quick: bool = field(default=False, metadata={"help": "A 2-minute version with tiny sizes (used by the tests)."})
    train_prompts: int = field(
        default=96,
        metadata={"help": "Training prompts: `validation_prompts` of them choose betas, the rest make pairs."},
    )
    validation_prompts: int = field(
        default=32, metadata={"help": "Training prompts held out of the pairs to choose each baseline's beta."}
    )
    eval_prompts: int = field(default=64, metadata={"help": "Held-out prompts of the reported evaluation."})
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Sampling seeds of the evaluation."})
    samples_per_prompt: int = field(
        default=4, metadata={"help": "Patient samples per training prompt (best vs worst)."}
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per response."})
    doctor_layers: int = field(
        default=0,
        metadata={
            "help": "0: the doctor is a LoRA copy of the patient (default: it starts as a fluent LM); K > 0: "
            "the patient's first K layers, trained in full (cheaper to decode, but a poor LM at the start)."
        },
    )
    epochs: float = field(default=2.0, metadata={"help": "Training epochs of every trained method."})
    learning_rate: float = field(
        default=DEMO_LEARNING_RATE,
        metadata={"help": "Learning rate of every trained method (LoRA of both doctors and DPO)."},
    )
    value_head_learning_rate: float | None = field(
        default=None, metadata={"help": "Value-head learning rate of the TFPO doctors (None: --learning_rate)."}
    )
    theta: float = field(default=0.5, metadata={"help": "Token-reward sparsity threshold."})
    lambda_value: float = field(default=0.1, metadata={"help": "Weight of the value-discrimination loss."})
    beta: float = field(
        default=DEFAULT_GUIDANCE_BETA, metadata={"help": "LLMdoctor's beta (ratio guidance), saved as its default."}
    )
    betas: list[float] = field(
        default_factory=lambda: [1.0, 2.0, 4.0],
        metadata={"help": "Betas swept on the validation prompts; each baseline doctor is evaluated at its best."},
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of every sampled method."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus threshold of every sampled method."})
    best_of_n: int = field(default=4, metadata={"help": "N of the best-of-N baseline (0 skips it)."})
    baselines: bool = field(default=True, metadata={"help": "Train and evaluate the GenARM-style and DPO baselines."})
    ablation: bool = field(
        default=True, metadata={"help": "Train and evaluate the paper-literal flow (no reference) as an ablation."}
    )
    dtype: str = field(
        default="bfloat16",
        metadata={"help": "Patient dtype for sampling and decoding.", "choices": ["float32", "bfloat16"]},
    )
    judge: str = field(default="vader", metadata={"help": "Built-in judge name."})
    seed: int = field(default=0, metadata={"help": "Random seed (prompt split, pairs, training)."})

    def __post_init__(self):
        if self.quick:
            self.train_prompts, self.validation_prompts, self.eval_prompts = 16, 4, 6
            self.samples_per_prompt, self.max_new_tokens, self.epochs = 2, 12, 1.0
            self.betas, self.seeds, self.best_of_n = [1.0, 2.0], [0], 2
        if not 0 < self.validation_prompts < self.train_prompts:
            raise ValueError(
                f"validation_prompts ({self.validation_prompts}) must be at least 1 and fewer than train_prompts "
                f"({self.train_prompts}): the rest of the training prompts make the preference pairs."
            )
        if self.train_prompts + self.eval_prompts > len(load_prompts()):
            raise ValueError(
                f"train_prompts + eval_prompts = {self.train_prompts + self.eval_prompts} is more than the "
                f"{len(load_prompts())} shipped prompts."
            )


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    """Record the seconds the `with` block takes as `timings[step]`."""
    clock = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - clock


def run_demo(args: DemoArguments) -> Path:
    """Run the pipeline and write the report directory; returns the path of `report.md`."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed(timings, "load patient"):
        judge = get_judge(args.judge)
        patient, tokenizer = load_default_patient(dtype=DTYPES[args.dtype])
        pair_prompts, validation_prompts, eval_prompts = split_prompts(args)
    with timed(timings, "sample and judge preference pairs"):
        pairs, pair_stats = build_preference_pairs(patient, tokenizer, pair_prompts, judge, args)
    print(f"[demo] {pair_stats['pairs']} preference pairs ({timings['sample and judge preference pairs']:.0f} s)")
    with timed(timings, "stage 1 token rewards"):
        scored, reward_stats = score_pairs(patient, tokenizer, pairs, args, output_dir)
    print(f"[demo] token rewards: {reward_stats['nonzero_fraction']:.1%} non-zero")
    doctors, dpo_model, training_logs = train_all(patient, tokenizer, pairs, scored, args, output_dir, timings)

    sampling = sampling_settings(args)
    unguided = unguided_method(patient, tokenizer, sampling)
    with timed(timings, "beta choice on the validation prompts"):
        chosen_betas, validation_results = choose_genarm_beta(
            doctors, unguided, patient, tokenizer, validation_prompts, judge, args, sampling
        )
    if args.ablation:  # not swept, to fit the CPU budget: its betas 1, 2, 4 overlapped in every sweep (results.md)
        chosen_betas = {LITERAL: LITERAL_BETA, **chosen_betas}
    methods = evaluated_methods(unguided, doctors, chosen_betas, dpo_model, patient, tokenizer, judge, args, sampling)
    with timed(timings, "evaluation"):
        results = evaluate_methods(methods, eval_prompts, judge, baseline=unguided.name, seeds=args.seeds)
    outcome = DemoOutcome(
        results, validation_results, chosen_betas, pair_stats, reward_stats, timings, training_logs, eval_prompts
    )
    return write_outputs(output_dir, args, outcome)


def write_outputs(output_dir: Path, args: DemoArguments, outcome: DemoOutcome) -> Path:
    """`results.json`, the score-versus-diversity plot and `report.md`, then the table and the paths on stdout;
    returns the path of `report.md`."""
    write_results_json(
        outcome.results,
        output_dir / "results.json",
        settings=asdict(args),
        pairs=outcome.pair_stats,
        rewards=outcome.reward_stats,
        chosen_betas=outcome.chosen_betas,
        validation=[r.summary() for r in outcome.validation_results],
    )
    plot_score_vs_diversity(outcome.results, output_dir / "reward_vs_diversity.png", judge_name=args.judge)
    report = write_report(output_dir, args, outcome)
    print(results_table(outcome.results))
    print(
        f"[demo] report: {report}\n[demo] plot: {output_dir / 'reward_vs_diversity.png'}\n"
        f"[demo] token rewards: {output_dir / 'token_rewards.html'}\n[demo] doctor: {output_dir / 'doctor'}"
    )
    return report
