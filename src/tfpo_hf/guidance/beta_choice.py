"""Choosing a doctor's decoding beta on validation prompts by a stated rule (`choose_beta`), and recording the choice
in its `DoctorConfig`, so `DoctorLogitsProcessor` and `GuidedModel` decode with it by default (`BetaChoice`)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..doctor.config import DoctorConfig
from ..doctor.saving import save_config_atomically
from ..evaluation.harness import Prompt, patient_generate_fn
from ..evaluation.judges import Judge, get_judge, judge_scores, takes_prompt
from ..evaluation.metrics import distinct_n
from .loading import BASE, PATIENT, finite_weight
from .logits_process import DoctorLogitsProcessor


if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


DEFAULT_BETAS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_MIN_DISTINCT_RATIO = 0.9
DEFAULT_MAX_NEW_TOKENS = 64  # when the generation kwargs give no length
# `rule` strings, formatted with the ratio
LARGEST_ADMISSIBLE = "largest beta whose distinct-2 is >= {ratio:g} x the unguided patient's"
BEST_JUDGED_ADMISSIBLE = (
    "highest mean judge score among the betas whose distinct-2 is >= {ratio:g} x the unguided patient's "
    "(ties: the smaller beta)"
)
NONE_ADMISSIBLE = "no beta kept distinct-2 >= {ratio:g} x the unguided patient's: the smallest candidate"


@dataclass
class BetaCandidate:
    """One candidate beta, measured on the validation prompts.

    Args:
        beta (`float`): the candidate.
        distinct_2 (`float`): distinct-2 of its generations, pooled over the prompts.
        mean_score (`float` or `None`): the judge's mean score of its generations (`None` without a judge).
        admissible (`bool`): whether `distinct_2` is at least `min_distinct_ratio` times the unguided patient's.
        texts (`list[str]`): its generations, one per prompt (not saved in `doctor_config.json`).
    """

    beta: float
    distinct_2: float
    mean_score: float | None
    admissible: bool
    texts: list[str] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "distinct_2": self.distinct_2,
            "mean_score": self.mean_score,
            "admissible": self.admissible,
        }


@dataclass
class BetaChoice:
    r"""
    The beta [`choose_beta`] chose, the rule that chose it and what was measured. Write it into a doctor with
    [`~BetaChoice.apply_to`] (a `DoctorConfig` in memory, e.g. a `DoctorModel`'s `doctor_config`) or
    [`~BetaChoice.apply_to_folder`] (a saved doctor); [`DoctorLogitsProcessor`] and [`GuidedModel`] then decode with
    `beta` when a call gives none. `BetaChoice.from_texts` applies the rule to generations made elsewhere.

    Args:
        beta (`float`):
            The chosen beta.
        rule (`str`):
            The rule that chose it, in words.
        rows (`list[BetaCandidate]`):
            One row per candidate, by increasing beta: its distinct-2, mean judge score and admissibility.
        unguided_distinct_2 (`float`):
            Distinct-2 of the unguided patient's generations on the same prompts and seed.
        min_distinct_ratio (`float`):
            The admissibility threshold, as a fraction of `unguided_distinct_2`.
        unguided_mean_score (`float`, *optional*):
            The judge's mean score of the unguided generations (`None` without a judge).
        judge (`str`, *optional*):
            The judge's name (`None` without a judge).
        settings (`dict[str, Any]`, *optional*, defaults to `{}`):
            How the generations were made: `seed`, `num_prompts`, the JSON-representable generation kwargs, the
            processor's `alpha` and `reference`.
        unguided_texts (`list[str]`, *optional*, defaults to `[]`):
            The unguided generations (not saved in `doctor_config.json`).
    """

    beta: float
    rule: str
    rows: list[BetaCandidate]
    unguided_distinct_2: float
    min_distinct_ratio: float
    unguided_mean_score: float | None = None
    judge: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    unguided_texts: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def candidates(self) -> list[float]:
        return [row.beta for row in self.rows]

    # ------------------------------------------------------------------ the rule
    @classmethod
    def from_texts(
        cls,
        unguided_texts: Sequence[str],
        guided_texts: Mapping[float, Sequence[str]],
        judge: str | Judge | None = None,
        min_distinct_ratio: float = DEFAULT_MIN_DISTINCT_RATIO,
        settings: dict[str, Any] | None = None,
        prompts: Sequence[Prompt] | None = None,
    ) -> BetaChoice:
        """Apply the rule of [`choose_beta`] to generations already made: `unguided_texts` from the patient alone and
        `guided_texts[beta]` from the patient guided at each candidate beta, on the same prompts (same order). A judge
        that scores a text against its prompt (one with a `prompt` parameter) needs those `prompts`.

        Raises:
            ValueError: naming the argument, for an empty `unguided_texts` or `guided_texts`, candidate betas that are
                not finite and non-negative, a `min_distinct_ratio` outside (0, 1], guided texts not one per unguided
                text, or a judge score that is not finite.
        """
        min_distinct_ratio = check_min_distinct_ratio(min_distinct_ratio)
        unguided_texts = list(unguided_texts)
        if not unguided_texts:
            raise ValueError("`unguided_texts` is empty: give the unguided patient's generations on the prompts.")
        if not guided_texts:
            raise ValueError("`guided_texts` is empty: give the generations of at least one candidate beta.")
        check_betas(list(guided_texts))
        guided = {float(beta): list(texts) for beta, texts in guided_texts.items()}
        for beta, texts in guided.items():
            if len(texts) != len(unguided_texts):
                raise ValueError(
                    f"`guided_texts[{beta:g}]` holds {len(texts)} texts for {len(unguided_texts)} unguided ones: "
                    "give one text per prompt, the same prompts for every beta."
                )
        score = _mean_score_fn(get_judge(judge), prompts) if judge is not None else lambda texts: None
        unguided_distinct_2 = distinct_n(unguided_texts, 2)
        rows = []
        for beta in sorted(guided):
            texts = guided[beta]
            distinct_2 = distinct_n(texts, 2)
            admissible = distinct_2 >= min_distinct_ratio * unguided_distinct_2
            rows.append(BetaCandidate(beta, distinct_2, score(texts), admissible, texts))
        admissible = [row for row in rows if row.admissible]
        if not admissible:
            beta, rule = rows[0].beta, NONE_ADMISSIBLE
            warnings.warn(
                f"No candidate beta kept distinct-2 >= {min_distinct_ratio:g} x the unguided patient's "
                f"({unguided_distinct_2:.3f}); choosing the smallest candidate, {beta:g}. Try smaller betas.",
                UserWarning,
                stacklevel=2,
            )
        elif judge is None:
            beta, rule = admissible[-1].beta, LARGEST_ADMISSIBLE
        else:
            best = max(admissible, key=lambda row: (row.mean_score, -row.beta))
            beta, rule = best.beta, BEST_JUDGED_ADMISSIBLE
            unguided_score = score(unguided_texts)
            if best.mean_score <= unguided_score:
                warnings.warn(
                    f"No candidate beta scored above the unguided patient on these prompts (best: beta {beta:g}, "
                    f"{best.mean_score:.3f}, against {unguided_score:.3f} unguided): the doctor does not steer toward "
                    "the judge's preference here. Check its training (steps, pairs, the faces' token rewards) before "
                    "decoding with it.",
                    UserWarning,
                    stacklevel=2,
                )
        return cls(
            beta=beta,
            rule=rule.format(ratio=min_distinct_ratio),
            rows=rows,
            unguided_distinct_2=unguided_distinct_2,
            min_distinct_ratio=min_distinct_ratio,
            unguided_mean_score=score(unguided_texts),
            judge=None if judge is None else _judge_name(judge),
            settings=dict(settings or {}),
            unguided_texts=unguided_texts,
        )

    # ------------------------------------------------------------------ recording
    def to_dict(self) -> dict[str, Any]:
        """The record saved as `DoctorConfig.beta_choice` (JSON: no texts)."""
        return {
            "beta": self.beta,
            "rule": self.rule,
            "candidates": self.candidates,
            "min_distinct_ratio": self.min_distinct_ratio,
            "judge": self.judge,
            "unguided_distinct_2": self.unguided_distinct_2,
            "unguided_mean_score": self.unguided_mean_score,
            "table": [row.to_dict() for row in self.rows],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BetaChoice:
        """A choice read back from `DoctorConfig.beta_choice` (without its texts)."""
        return cls(
            beta=values["beta"],
            rule=values["rule"],
            rows=[BetaCandidate(**row) for row in values["table"]],
            unguided_distinct_2=values["unguided_distinct_2"],
            min_distinct_ratio=values["min_distinct_ratio"],
            unguided_mean_score=values.get("unguided_mean_score"),
            judge=values.get("judge"),
            settings=dict(values.get("settings") or {}),
        )

    def apply_to(self, config: DoctorConfig) -> DoctorConfig:
        """Set `config.beta` to the chosen beta and `config.beta_choice` to `to_dict()`, in place; returns `config`."""
        config.beta = self.beta
        config.beta_choice = self.to_dict()
        return config

    def apply_to_folder(self, save_directory: str | os.PathLike) -> DoctorConfig:
        """Record the choice in the `doctor_config.json` of the saved doctor in `save_directory` (its other settings,
        unknown keys included, are kept), written atomically; returns the updated config. The model card
        (`README.md`) is left as it is.

        Raises:
            FileNotFoundError: `save_directory` is not a local folder (a Hub doctor: download it first).
        """
        save_directory = Path(save_directory)
        if not save_directory.is_dir():
            raise FileNotFoundError(
                f"{save_directory} is not a folder: `apply_to_folder` rewrites a saved doctor's local "
                "doctor_config.json (for a Hub doctor, download it first, e.g. with "
                "huggingface_hub.snapshot_download)."
            )
        config = self.apply_to(DoctorConfig.from_pretrained(save_directory))
        save_config_atomically(config, save_directory)
        return config


def choose_beta(
    patient: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    doctor,
    prompts: Sequence[Prompt],
    betas: Sequence[float] = DEFAULT_BETAS,
    judge: str | Judge | None = None,
    min_distinct_ratio: float = DEFAULT_MIN_DISTINCT_RATIO,
    seed: int = 0,
    batch_size: int = 8,
    processor_kwargs: dict[str, Any] | None = None,
    **generate_kwargs,
) -> BetaChoice:
    r"""
    Choose a doctor's decoding beta on validation prompts. How far a doctor can be pushed depends on how long it
    trained: too large a beta and the text degenerates (distinct-2 collapses), too small and the doctor does nothing.
    The rule:

    1. Sample (same `seed`, same generation kwargs) from the patient alone and from the patient guided by the doctor
       ([`DoctorLogitsProcessor`], with the doctor's recorded guidance) at each candidate beta, on `prompts`.
    2. A beta is *admissible* when the distinct-2 of its generations is at least `min_distinct_ratio` times the
       unguided patient's (every beta is when the unguided generations have no pair of words: a distinct-2 of 0).
    3. Without a `judge`: the largest admissible beta. With a `judge`: the admissible beta with the highest mean judge
       score (ties: the smaller beta). When no beta is admissible: the smallest candidate, with a warning.

    Record the choice in the doctor with [`~BetaChoice.apply_to`] or [`~BetaChoice.apply_to_folder`].

    Args:
        patient (`PreTrainedModel`):
            The frozen patient causal LM.
        tokenizer (`PreTrainedTokenizerBase`):
            The patient's tokenizer, with a chat template: prompts are rendered through it as in
            `tfpo_hf.evaluation.patient_generate_fn`.
        doctor (`PreTrainedModel`, `DoctorModel` or `str`):
            One doctor, as [`DoctorLogitsProcessor`] takes it (a model, a `DoctorModel`, or a saved doctor's path or
            Hub id).
        prompts (`list[str]` or `list[list[dict]]`):
            The validation prompts: user messages, or whole conversations.
        betas (`list[float]`, *optional*, defaults to `(0.5, 1.0, 2.0, 4.0, 8.0)`):
            The candidates: finite, non-negative (duplicates are measured once).
        judge (`str` or `Callable[[str], float]`, *optional*):
            A judge (a built-in name such as `"vader"`, any callable text -> score, or one with a `prompt` parameter
            that scores a text against its prompt): chooses among the admissible betas by mean score. Without one, the largest admissible beta is chosen.
        min_distinct_ratio (`float`, *optional*, defaults to 0.9):
            The admissibility threshold, as a fraction of the unguided patient's distinct-2, in (0, 1].
        seed (`int`, *optional*, defaults to 0):
            The seed set before each method's generations, so every candidate samples the same way.
        batch_size (`int`, *optional*, defaults to 8):
            Prompts per `generate` call.
        processor_kwargs (`dict[str, Any]`, *optional*):
            Passed to [`DoctorLogitsProcessor`] (`references`, `alpha`, `from_pretrained_kwargs` such as `dtype`).
            Left out, the doctor's recorded guidance is used, as it is when decoding with the recorded beta.
        generate_kwargs (`dict[str, Any]`, *optional*):
            Passed to `patient.generate`. `do_sample` defaults to `True` and, when no length is given,
            `max_new_tokens` to 64.

    Returns:
        [`BetaChoice`]: the chosen `beta`, the `rule` that chose it, one row per candidate (`rows`: distinct-2, mean
        judge score, admissibility) and the unguided patient's distinct-2.

    Raises:
        `ValueError`: naming the argument, for empty `prompts` or `betas`, betas that are not finite and non-negative,
        a `min_distinct_ratio` outside (0, 1], more than one doctor, or a judge score that is not finite.

    Examples:

    ```python
    >>> from tfpo_hf import DoctorConfig, choose_beta
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

    >>> # tiny random models; with a trained doctor: choose_beta(patient, tokenizer, "my-doctor", prompts, judge=...)
    >>> patient, doctor, tokenizer = tiny_causal_lm(seed=0), tiny_causal_lm(seed=1), tiny_tokenizer()
    >>> choice = choose_beta(patient, tokenizer, doctor, ["Hi!", "Tell me about cats."], betas=(0.5, 2.0),
    ...                      max_new_tokens=4)
    >>> choice.candidates, choice.rule
    ([0.5, 2.0], "largest beta whose distinct-2 is >= 0.9 x the unguided patient's")
    >>> config = choice.apply_to(DoctorConfig())  # or choice.apply_to_folder("my-doctor"): its doctor_config.json
    >>> config.beta == choice.beta, config.beta_choice["candidates"]
    (True, [0.5, 2.0])

    ```
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(f"`prompts` must be a list of prompts, got {type(prompts).__name__}.")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("`prompts` is empty: give at least one validation prompt.")
    betas = check_betas(betas)
    min_distinct_ratio = check_min_distinct_ratio(min_distinct_ratio)
    if isinstance(doctor, (list, tuple)):
        raise ValueError("`doctor` must be one doctor: choose_beta chooses the beta of a single doctor.")
    generate_kwargs.setdefault("do_sample", True)
    if "max_new_tokens" not in generate_kwargs and "max_length" not in generate_kwargs:
        generate_kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS

    processor = DoctorLogitsProcessor(doctor, tokenizer=tokenizer, **(processor_kwargs or {}))
    unguided = patient_generate_fn(patient, tokenizer, batch_size=batch_size, **generate_kwargs)(prompts, seed)
    guided_generate = patient_generate_fn(
        patient, tokenizer, batch_size=batch_size, processor_factory=lambda: processor, **generate_kwargs
    )
    guided = {}
    for beta in betas:
        processor.set_betas(beta)
        guided[beta] = guided_generate(prompts, seed)
    settings = {
        "seed": seed,
        "num_prompts": len(prompts),
        "generation": {key: value for key, value in generate_kwargs.items() if _is_json_scalar(value)},
        "alpha": processor.alpha,
        "reference": _reference_name(processor.references[0]),
    }
    return BetaChoice.from_texts(unguided, guided, judge, min_distinct_ratio, settings, prompts)


# ---------------------------------------------------------------------- checks and helpers
def check_betas(betas: Sequence[float]) -> list[float]:
    """The candidate betas as sorted, distinct floats; raises a `ValueError` naming `betas` for an empty list or a
    value that is not a finite, non-negative real number."""
    if isinstance(betas, (str, bytes)) or not isinstance(betas, Iterable):
        raise ValueError(f"`betas` must be a list of candidate betas, got {betas!r}.")
    values = [finite_weight(f"betas[{i}]", beta) for i, beta in enumerate(betas)]
    if not values:
        raise ValueError("`betas` is empty: give at least one candidate beta.")
    negative = [value for value in values if value < 0]
    if negative:
        raise ValueError(f"`betas` must be non-negative (a negative beta steers away from the goal), got {negative}.")
    return sorted(set(values))


def check_min_distinct_ratio(ratio: float) -> float:
    """`ratio` as a float in (0, 1]; raises a `ValueError` naming `min_distinct_ratio` otherwise."""
    ratio = finite_weight("min_distinct_ratio", ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"min_distinct_ratio must be in (0, 1], got {ratio!r}.")
    return ratio


def _mean_score_fn(judge: Judge, prompts: Sequence[Prompt] | None) -> Callable[[list[str]], float]:
    if prompts is None and takes_prompt(judge):
        raise ValueError(
            "The judge scores a text against its prompt (it has a `prompt` parameter): give the `prompts` the texts "
            "answer."
        )

    def mean_score(texts: list[str]) -> float:
        scores = judge_scores(judge, texts, prompts) if prompts is not None else [float(judge(t)) for t in texts]
        bad = [score for score in scores if not math.isfinite(score)]
        if bad:
            raise ValueError(f"The `judge` gave a score that is not finite ({bad[0]!r}): it must return real numbers.")
        return sum(scores) / len(scores)

    return mean_score


def _judge_name(judge: str | Judge) -> str:
    if isinstance(judge, str):
        return judge
    return str(getattr(judge, "name", None) or getattr(judge, "__name__", None) or type(judge).__name__)


def _reference_name(reference) -> str | None:
    """The processor's reference of the doctor, as recorded: `None` (the mix), `"patient"`, `"initial"`, or a model's
    name."""
    if reference is None or reference == PATIENT:
        return reference
    if reference == BASE:
        return "initial"
    return str(getattr(reference, "name_or_path", "") or type(reference).__name__)


def _is_json_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
