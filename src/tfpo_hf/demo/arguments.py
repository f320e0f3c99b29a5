"""The options of `tfpo-hf demo`: sizes, training, decoding and the judge, one flag per field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..training.config import DEFAULT_GUIDANCE_BETA
from ..utils.coder_pair import DOCTOR, PAIR_NAME, PATIENT
from .tasks import TASKS, DemoTask


EMBEDDED_DOCTOR = "smollm2"  # --cross_family_doctor's name for the embedded SmolLM2-135M-Instruct
DPO_BETA = 0.1  # TRL's DPOConfig default: the strength of the main DPO rows
DEMO_LEARNING_RATE = 5e-4  # measured with the betas on the validation prompts: docs/results.md
DOCTOR_LAYERS_HELP = (
    "0: the doctor is a LoRA copy of the patient (default: it starts as a fluent LM); K > 0: the patient's first K "
    "layers, trained in full (cheaper to decode, but a poor LM at the start)."
)


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A field with its `--help` text (and any other parser metadata); a list default is copied per instance."""
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class DemoArguments:
    """The options of `tfpo-hf demo` (models, sizes, training, decoding and the judge); `quick` shrinks the sizes."""

    output_dir: str = option("tfpo_demo", "Report directory.")
    task: str = option(
        "movie_review",
        "What the prompts ask and the judge scores: `movie_review` (continue a review opening warmly, VADER) or "
        "`code` (write a small Python function, scored by hidden test cases).",
        choices=sorted(TASKS),
    )
    quick: bool = option(False, "A 2-minute version with tiny sizes (used by the tests).")
    pair: str | None = option(
        None,
        f"A named weak-to-strong pair: {PAIR_NAME!r} (the packaged Qwen2.5-Coder-1.5B-Instruct patient and "
        "0.5B-Instruct doctor base; `make pair`). Sets --patient and --doctor_base.",
    )
    patient: str | None = option(None, "Patient Hub id or folder (default: the embedded SmolLM2-135M-Instruct).")
    doctor_base: str | None = option(
        None,
        "Hub id or folder of the model the doctors start from, sharing the patient's tokenizer (default: a copy of "
        "the patient). A smaller model makes a weak-to-strong run: its doctors steer the patient against their "
        "initial weights, and the report adds that model alone, DPO on it and DPO-LoRA on the patient.",
    )
    cross_family_doctor: str | None = option(
        None,
        "Also train and evaluate an LLMdoctor of another family than the patient's, with another tokenizer (guided "
        f"across tokenizers): {EMBEDDED_DOCTOR!r} for the embedded SmolLM2-135M-Instruct, or a Hub id or folder.",
    )
    resume: bool = option(
        False,
        "Reuse the finished steps (pairs, token rewards, trained models, generations) that a stopped run with the "
        "same settings left in output_dir; without it, a run starts over.",
    )
    train_prompts: int = option(
        96, "Training prompts: `validation_prompts` of them choose betas, the rest make pairs."
    )
    validation_prompts: int = option(32, "Training prompts held out of the pairs to choose each baseline's beta.")
    eval_prompts: int = option(64, "Held-out prompts of the reported evaluation.")
    seeds: list[int] = option([0, 1], "Sampling seeds of the evaluation.")
    samples_per_prompt: int = option(4, "Patient samples per training prompt (best vs worst).")
    max_new_tokens: int | None = option(None, "Tokens generated per completion (None: the task's, 32 or 96).")
    doctor_layers: int = option(0, DOCTOR_LAYERS_HELP)
    epochs: float = option(2.0, "Training epochs of every trained method.")
    learning_rate: float = option(
        DEMO_LEARNING_RATE, "Learning rate of every trained method (LoRA of both doctors and DPO)."
    )
    value_head_learning_rate: float | None = option(
        None, "Value-head learning rate of the TFPO doctors (None: --learning_rate)."
    )
    theta: float = option(0.5, "Token-reward sparsity threshold.")
    lambda_value: float = option(0.1, "Weight of the value-discrimination loss.")
    guidance_beta: float = option(
        DEFAULT_GUIDANCE_BETA, "LLMdoctor's beta (ratio guidance), saved as its default (see --choose_guidance_beta)."
    )
    choose_guidance_beta: bool = option(
        False,
        "Choose LLMdoctor's beta on the validation prompts instead, by `choose_beta`'s rule (the best judged of "
        "--guidance_betas keeping distinct-2 >= 0.9x the unguided patient's), and save it in the doctor.",
    )
    guidance_betas: list[float] = option(
        [1.0, 2.0, 4.0, 8.0], "Candidates of LLMdoctor's beta with --choose_guidance_beta."
    )
    frontier_betas: list[float] = option(
        [], "Extra betas at which LLMdoctor and the GenARM-style doctor are evaluated, for the score-diversity plot."
    )
    frontier_dpo_betas: list[float] = option(
        [],
        f"Extra strengths (DPO's beta; the main DPO rows use TRL's {DPO_BETA}) at which DPO is also trained, on the "
        "patient and in a weak-to-strong run on the doctors' base, and evaluated for the score-diversity plot.",
    )
    baseline_betas: list[float] = option(
        [1.0, 2.0, 4.0], "Betas swept on the validation prompts; each baseline doctor is evaluated at its best."
    )
    temperature: float = option(0.7, "Sampling temperature of every sampled method.")
    top_p: float = option(0.9, "Nucleus threshold of every sampled method.")
    best_of_n: int = option(4, "N of the best-of-N baseline (0 skips it).")
    baselines: bool = option(True, "Train and evaluate the GenARM-style and DPO baselines.")
    ablation: bool = option(True, "Train and evaluate the paper-literal flow (no flow reference) as an ablation.")
    patient_dtype: str = option(
        "bfloat16", "Patient dtype for sampling and decoding.", choices=["float32", "bfloat16"]
    )
    judge: str | None = option(None, "Built-in judge name (None: the task's, `vader` or `python_tests`).")
    seed: int = option(0, "Random seed (prompt split, pairs, training).")

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r}: the tasks are {sorted(TASKS)}.")
        self.judge = self.judge or self.demo_task.judge
        self.max_new_tokens = self.max_new_tokens or self.demo_task.max_new_tokens
        if self.pair is not None:
            if self.pair != PAIR_NAME:
                raise ValueError(f"Unknown pair {self.pair!r}: the named pair is {PAIR_NAME!r}.")
            self.patient, self.doctor_base = PATIENT.hub_id, DOCTOR.hub_id
        if self.quick:
            self.train_prompts, self.validation_prompts, self.eval_prompts = 16, 4, 6
            self.samples_per_prompt, self.epochs = 2, 1.0
            self.max_new_tokens = self.demo_task.quick_max_new_tokens
            self.baseline_betas, self.guidance_betas, self.seeds, self.best_of_n = [1.0, 2.0], [1.0, 2.0], [0], 2
        if not 0 < self.validation_prompts < self.train_prompts:
            raise ValueError(
                f"validation_prompts ({self.validation_prompts}) must be at least 1 and fewer than train_prompts "
                f"({self.train_prompts}): the rest of the training prompts make the preference pairs."
            )
        available = len(self.demo_task.messages())
        if self.train_prompts + self.eval_prompts > available:
            raise ValueError(
                f"train_prompts + eval_prompts = {self.train_prompts + self.eval_prompts} is more than the "
                f"{available} prompts of the {self.task} task."
            )

    @property
    def demo_task(self) -> DemoTask:
        """The task named by `task`."""
        return TASKS[self.task]

    @property
    def weak_to_strong(self) -> bool:
        """Whether the doctors start from another model than the patient."""
        return self.doctor_base is not None and self.doctor_base != self.patient
