"""What `DoctorLogitsProcessor` adds for doctors of another tokenizer than the patient's: which rows of a `generate`
call hold which prompt and generated ids, the candidates they score (the patient's top-k), and the checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import CompileConfig, PreTrainedModel

from ..cross_tokenizer.text_guidance import RowKey, TextDoctor
from ..utils.logps import log_softmax_keeping_masked
from .loading import PATIENT


TEXT_TOP_K = 10
"""Candidates per row (the patient's most probable tokens) when a doctor is read as text and `guided_top_k` is not
given: each costs the doctor's probability of its text."""


class TextRows:
    """The prompt index and generated ids of each row of the `generate` call under way, for the doctors read as text;
    the conversations (one per prompt) their own chat templates read.

    A call continues the generation under way when it has the same rows, one token longer, over the same prompts
    (beam search reorders rows within a prompt's group only); any other call starts a generation, whose prompts must
    be those the conversations were first used with (else they belong to another call: set them anew).
    """

    def __init__(self, conversations: Sequence | None) -> None:
        self.conversations = None if conversations is None else list(conversations)
        self._prompts_of_conversations: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the generation under way (the conversations stay)."""
        self._prompts: torch.Tensor | None = None  # (batch_size, prompt_length): every row's prompt
        self._length = 0
        self._rows_per_prompt = 1

    def __call__(self, input_ids: torch.LongTensor, text_doctors: Sequence[TextDoctor]) -> list[RowKey]:
        """Each row's (prompt index, generated ids); starts `text_doctors` on a new generation when one begins."""
        input_ids = input_ids.cpu()
        if not self._continues(input_ids):
            self._start(input_ids, text_doctors)
        self._length = input_ids.shape[1]
        prompt_length = self._prompts.shape[1]
        return [
            (row // self._rows_per_prompt, tuple(input_ids[row, prompt_length:].tolist()))
            for row in range(input_ids.shape[0])
        ]

    def _continues(self, input_ids: torch.LongTensor) -> bool:
        prompts = self._prompts
        return (
            prompts is not None
            and input_ids.shape[0] == prompts.shape[0]
            and input_ids.shape[1] == self._length + 1
            and torch.equal(input_ids[:, : prompts.shape[1]], prompts)
        )

    def _start(self, input_ids: torch.LongTensor, text_doctors: Sequence[TextDoctor]) -> None:
        if self.conversations is None:
            raise ValueError(
                "A doctor of another tokenizer than the patient's reads the conversation in its own chat template, "
                "not the patient's ids: pass `conversations=` (one per prompt: a list of messages, or a plain "
                "string) to `DoctorLogitsProcessor`, or call `set_conversations(...)` before `generate`."
            )
        batch_size, num_prompts = input_ids.shape[0], len(self.conversations)
        if num_prompts == 0 or batch_size % num_prompts:
            raise ValueError(
                f"{num_prompts} conversations for a batch of {batch_size} rows: give one conversation per prompt of "
                "the `generate` call, in the order of its rows."
            )
        self._rows_per_prompt = batch_size // num_prompts
        distinct_prompts = input_ids[:: self._rows_per_prompt]
        if self._prompts_of_conversations is None:
            self._prompts_of_conversations = distinct_prompts
        elif not torch.equal(distinct_prompts, self._prompts_of_conversations):
            raise ValueError(
                "This `generate` call's prompts are not the ones the conversations were set for: call "
                "`set_conversations(...)` with this call's conversations first."
            )
        self._prompts = input_ids.clone()
        for doctor in text_doctors:
            doctor.start(self.conversations)


def text_doctors(
    doctors: Sequence[PreTrainedModel],
    references: Sequence,
    doctor_tokenizers: Sequence,
    patient_tokenizer,
    compile_config: CompileConfig | None,
    text_probability: str,
    beam_size: int | None,
) -> list[TextDoctor | None]:
    """A `TextDoctor` for each doctor with a tokenizer of its own (`None` for the others)."""
    built: list[TextDoctor | None] = []
    for doctor, reference, doctor_tokenizer in zip(doctors, references, doctor_tokenizers):
        if doctor_tokenizer is None:
            built.append(None)
            continue
        if compile_config is not None:
            raise ValueError(
                "`compile_doctors` applies to doctors of the patient's tokenizer only: a doctor of another tokenizer "
                "is read as text, in eager mode. Leave `compile_doctors=False`."
            )
        if isinstance(reference, str) and reference == PATIENT:
            raise ValueError(
                f"Doctor {doctor.name_or_path!r} has another tokenizer than the patient's, so the patient cannot be "
                "its reference: use `references='initial'` (its weights before training) or `references='none'`."
            )
        built.append(TextDoctor(doctor, reference, doctor_tokenizer, patient_tokenizer, text_probability, beam_size))
    return built


def check_text_doctor(argument: str, doctor: PreTrainedModel, doctor_tokenizer, patient_tokenizer) -> None:
    """Refuse a doctor given its own tokenizer without the patient's, or with a tokenizer wider than its head."""
    name = doctor.name_or_path or type(doctor).__name__
    if patient_tokenizer is None:
        raise ValueError(
            f"`{argument}` ({name!r}) has a tokenizer of its own: pass the patient's as `tokenizer=` too, so that the "
            "patient's tokens can be read as text."
        )
    vocab_size = doctor.config.get_text_config().vocab_size
    if vocab_size < len(doctor_tokenizer):
        raise ValueError(
            f"Doctor {name!r} has {vocab_size} vocabulary ids, fewer than the {len(doctor_tokenizer)} tokens of its "
            f"tokenizer {doctor_tokenizer.name_or_path!r}: give the tokenizer the doctor was trained with."
        )


def per_doctor(name: str, value, num_doctors: int) -> list:
    """One entry per doctor: `None` for all, one value for all, or a list of `num_doctors` values."""
    if not isinstance(value, (list, tuple)):
        return [value] * num_doctors
    if len(value) != num_doctors:
        raise ValueError(
            f"Got {len(value)} `{name}` for {num_doctors} doctors: give one per doctor (None: the patient's)."
        )
    return list(value)


def top_k_candidates(scores: torch.Tensor, vocab_size: int, k: int) -> torch.LongTensor:
    """(batch_size, min(k, vocab_size)) the ids of each row's `k` highest patient scores."""
    return scores[:, :vocab_size].topk(min(k, vocab_size), dim=-1).indices


def scattered(values: torch.Tensor, candidates: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
    """`values` `(batch_size, k)` of the `candidates` as a `(batch_size, vocab)` tensor like `scores`, `-inf`
    elsewhere."""
    full = torch.full_like(scores, float("-inf"))
    return full.scatter(1, candidates, values.to(device=scores.device, dtype=scores.dtype))


def only_candidates(mixed: torch.Tensor, candidates: torch.LongTensor, normalize: bool) -> torch.Tensor:
    """`mixed` with every id outside `candidates` at `-inf` (log-normalised again when `normalize`)."""
    kept = torch.zeros_like(mixed, dtype=torch.bool).scatter(1, candidates, True)
    mixed = mixed.masked_fill(~kept, float("-inf"))
    return log_softmax_keeping_masked(mixed) if normalize else mixed
