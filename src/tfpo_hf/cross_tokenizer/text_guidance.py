"""A doctor of another tokenizer inside `generate()`: each row's text, as the patient writes it, read by the doctor
(and its reference) in the doctor's own tokens, and their log-probabilities of the text of each candidate token of
the patient. `DoctorLogitsProcessor` runs one `TextDoctor` per such doctor."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..guidance.loading import BASE
from .aligned_text import AlignedTextModel
from .prompted_paths import PromptedPaths
from .text_probability import TextPrefixModel
from .token_bytes import TokenBytes


TEXT_PROBABILITIES = ("aligned", "marginal")
RowKey = tuple[int, tuple[int, ...]]  # (index of the row's prompt, the patient ids generated after it)


class MarginalTextModel:
    """`TextPrefixModel` over a `PromptedPaths` whose committed path follows the kept paths' common part, so each
    step runs only the tokens past it (the marginal over every path of the text, within `beam_size`)."""

    def __init__(self, token_bytes: TokenBytes, paths: PromptedPaths, beam_size: int | None) -> None:
        self.paths = paths
        self.text_model = TextPrefixModel(token_bytes, paths, beam_size)

    def copy(self) -> MarginalTextModel:
        twin = object.__new__(MarginalTextModel)
        twin.paths = self.paths.copy()
        twin.text_model = self.text_model.copy(twin.paths)
        return twin

    def log_probs(self, continuations: Sequence[bytes]) -> torch.Tensor:
        return self.text_model.log_probs(continuations)

    def log_stop_probs(self, token_ids: Sequence[int]) -> torch.Tensor:
        return self.text_model.log_stop_probs(token_ids)

    def advance(self, piece: bytes) -> None:
        self.text_model.advance(piece)
        self._commit()

    def advance_token(self, token_id: int) -> None:
        self.text_model.advance_token(token_id)
        self._commit()

    def _commit(self) -> None:
        """Commit the longest path every kept path starts with."""
        paths = [hypothesis.path for hypothesis in self.text_model.hypotheses]
        length = min(len(path) for path in paths)
        while any(path[:length] != paths[0][:length] for path in paths):
            length -= 1
        self.paths.commit(paths[0][:length])


class RowText:
    """One row's text as the doctor and its reference read it (`models`, in that order); a row whose patient wrote
    an end of turn is `finished` and gets no guidance."""

    def __init__(self, models: list[AlignedTextModel | MarginalTextModel]) -> None:
        self.models = models
        self.finished = False

    def copy(self) -> RowText:
        twin = RowText([model.copy() for model in self.models])
        twin.finished = self.finished
        return twin


class TextDoctor:
    """A doctor whose tokenizer differs from the patient's, with its reference, read as text.

    Args:
        doctor: the doctor's causal LM.
        reference: `None` (the mix), `"base"` (a LoRA doctor's base: its adapter switched off) or a causal LM of the
            doctor's tokenizer.
        doctor_tokenizer: the doctor's tokenizer (its chat template reads the conversations).
        patient_tokenizer: the patient's.
        text_probability: `"aligned"` (`AlignedTextModel`, one path per row) or `"marginal"` (`TextPrefixModel`,
            every path of the text within `beam_size`).
        beam_size: token paths kept per text (`None`: all, exact).
    """

    def __init__(
        self,
        doctor: PreTrainedModel,
        reference,
        doctor_tokenizer: PreTrainedTokenizerBase,
        patient_tokenizer: PreTrainedTokenizerBase,
        text_probability: str = "aligned",
        beam_size: int | None = 4,
    ) -> None:
        if text_probability not in TEXT_PROBABILITIES:
            raise ValueError(f"`text_probability` must be one of {TEXT_PROBABILITIES}, got {text_probability!r}.")
        self.doctor_tokenizer = doctor_tokenizer
        self.text_probability, self.beam_size = text_probability, beam_size
        self.doctor_bytes = TokenBytes.from_tokenizer(doctor_tokenizer, doctor.config.get_text_config().vocab_size)
        self.patient_bytes = TokenBytes.from_tokenizer(patient_tokenizer)
        self.special_ids = special_token_map(patient_tokenizer, doctor_tokenizer)
        self.end_ids = {
            index for index in (patient_tokenizer.eos_token_id, patient_tokenizer.pad_token_id) if index is not None
        }
        self._models = reading_models(doctor, reference)
        self._prompts: list[list[int]] = []
        self._rows: dict[RowKey, RowText] = {}

    def start(self, conversations: Sequence) -> None:
        """Begin a generation: the doctor's prompt for each conversation (a list of messages, read through the
        doctor's chat template with the generation prompt; or a plain string)."""
        self._prompts = [doctor_prompt_ids(self.doctor_tokenizer, conversation) for conversation in conversations]
        self._rows = {}

    def __call__(self, row_keys: Sequence[RowKey], candidates: torch.Tensor) -> list[torch.Tensor]:
        """
        Args:
            row_keys: each row's prompt index and generated patient ids; a row continues the row whose ids are its
                own minus the last (beams, sampled rows), or starts at its prompt.
            candidates (`torch.LongTensor` of shape `(batch_size, k)`): the patient ids to score in each row.

        Return:
            The doctor's, then (with a reference) the reference's log-probabilities of each candidate's text, each
            of shape `(batch_size, k)`, float64: `-inf` where the model cannot write it (a special token without a
            counterpart); 0 in every column of a finished row.
        """
        self._follow(row_keys)
        values = [torch.zeros(candidates.shape, dtype=torch.float64) for _ in self._models]
        for row, key in enumerate(row_keys):
            state = self._rows[key]
            if state.finished:
                continue
            for model, model_values in zip(state.models, values):
                model_values[row] = self._candidate_log_probs(model, candidates[row].tolist())
        return values

    def _follow(self, row_keys: Sequence[RowKey]) -> None:
        """Bring each row's text up to its generated ids: a new row starts at its prompt; a row one token further
        than a known one continues it (copied when several rows continue the same one)."""
        keys = list(dict.fromkeys(row_keys))
        new_keys = [key for key in keys if key not in self._rows]
        children = Counter((key[0], key[1][:-1]) for key in new_keys if key[1])
        rows = {key: self._rows[key] for key in keys if key in self._rows}
        for prompt_index, generated in new_keys:
            if not generated:
                rows[(prompt_index, generated)] = self._new_row(prompt_index)
                continue
            parent_key = (prompt_index, generated[:-1])
            if parent_key not in self._rows:
                raise RuntimeError(
                    "The doctor of another tokenizer lost track of a row (its ids are not one token past any row of "
                    "the previous step): call `reset()` before a generation that does not continue the last one."
                )
            children[parent_key] -= 1
            row = self._rows[parent_key] if children[parent_key] == 0 else self._rows[parent_key].copy()
            self._advance(row, generated[-1])
            rows[(prompt_index, generated)] = row
        self._rows = rows

    def _new_row(self, prompt_index: int) -> RowText:
        prompt = self._prompts[prompt_index]
        return RowText(
            [self._text_model(PromptedPaths(model, prompt, base_only=base)) for model, base in self._models]
        )

    def _text_model(self, paths: PromptedPaths) -> AlignedTextModel | MarginalTextModel:
        if self.text_probability == "aligned":
            return AlignedTextModel(self.doctor_bytes, paths, self.beam_size)
        return MarginalTextModel(self.doctor_bytes, paths, self.beam_size)

    def _advance(self, row: RowText, patient_id: int) -> None:
        """The patient wrote `patient_id`: its text, its special token's counterpart, or the end of the row."""
        if row.finished:
            return
        piece = self._patient_piece(patient_id)
        if piece:
            for model in row.models:
                model.advance(piece)
        elif patient_id in self.end_ids:
            row.finished = True
        elif patient_id in self.special_ids:
            for model in row.models:
                model.advance_token(self.special_ids[patient_id])

    def _patient_piece(self, patient_id: int) -> bytes:
        """The text of a patient id; `b""` for a special token or a row of the patient's head past its tokenizer."""
        by_id = self.patient_bytes.by_id
        return by_id[patient_id] if patient_id < len(by_id) else b""

    def _candidate_log_probs(self, model, candidates: list[int]) -> torch.Tensor:
        """(len(candidates),) log-probabilities of the candidates' texts (or special tokens) under one model."""
        values = torch.full((len(candidates),), float("-inf"), dtype=torch.float64)
        pieces = [self._patient_piece(index) for index in candidates]
        with_text = [position for position, piece in enumerate(pieces) if piece]
        if with_text:
            values[with_text] = model.log_probs([pieces[position] for position in with_text])
        specials = [
            position for position, index in enumerate(candidates) if not pieces[position] and index in self.special_ids
        ]
        if specials:
            values[specials] = model.log_stop_probs([self.special_ids[candidates[position]] for position in specials])
        return values


def reading_models(doctor: PreTrainedModel, reference) -> list[tuple[PreTrainedModel, bool]]:
    """The models that read the text, each with whether it runs with its adapter off: the doctor, then its reference.
    A `PeftModel` doctor guided against its base is read as two plain models, the adapter merged into a copy and the
    base unloaded from another: a small doctor's unmerged LoRA layers (and switching them off and on) cost more time
    than its weights' arithmetic, and two copies of a small model are cheap."""
    if isinstance(reference, str) and reference == BASE and hasattr(doctor, "merge_and_unload"):
        merged = copy.deepcopy(doctor).merge_and_unload().eval()
        return [(merged, False), (copy.deepcopy(doctor).unload().eval(), False)]
    if isinstance(reference, str) and reference == BASE:
        return [(doctor, False), (doctor, True)]
    return [(doctor, False)] + ([(reference, False)] if reference is not None else [])


def special_token_map(
    patient_tokenizer: PreTrainedTokenizerBase, doctor_tokenizer: PreTrainedTokenizerBase
) -> dict[int, int]:
    """Patient special token id -> the doctor's token of the same text (`<|im_end|>` in both ChatML families); the
    patient's end of sequence -> the doctor's when no token of the same text exists."""
    doctor_vocab = doctor_tokenizer.get_vocab()
    patient_specials = set(patient_tokenizer.all_special_ids) | {
        index for index, added in patient_tokenizer.added_tokens_decoder.items() if added.special
    }
    mapping = {}
    for index in patient_specials:
        text = patient_tokenizer.convert_ids_to_tokens(index)
        if text in doctor_vocab:
            mapping[index] = doctor_vocab[text]
    eos = patient_tokenizer.eos_token_id
    if eos is not None and eos not in mapping and doctor_tokenizer.eos_token_id is not None:
        mapping[eos] = doctor_tokenizer.eos_token_id
    return mapping


def doctor_prompt_ids(doctor_tokenizer: PreTrainedTokenizerBase, conversation) -> list[int]:
    """The doctor's prompt ids: a conversation through its chat template (with the generation prompt), or a plain
    string with its special tokens."""
    if isinstance(conversation, str):
        return doctor_tokenizer(conversation)["input_ids"]
    text = doctor_tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
    return doctor_tokenizer(text, add_special_tokens=False)["input_ids"]
