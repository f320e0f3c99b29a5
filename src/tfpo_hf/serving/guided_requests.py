"""Doctor guidance for the requests of a serving engine, each with betas of its own: the engine-independent core that
the vLLM logits processor wraps."""

from __future__ import annotations

import numbers
import reprlib
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..guidance.loading import PATIENT, described, doctor_weights
from ..guidance.logits_process import DoctorLogitsProcessor
from ..guidance.mixing import DoctorTerm, checked_log_softmax, guided_scores
from .request_rows import RequestRows


RECORDED = "default"  # a request's `doctor_betas` asking for the betas the doctors record
TOKEN_IDS = "a list, tuple, 1-d tensor or 1-d numpy array of int token ids"


@dataclass
class GuidedRequest:
    """A request under guidance: its prompt, its output so far (the engine's own list, which grows) and its betas."""

    prompt_ids: Sequence[int]
    output_ids: Sequence[int]
    betas: list[float]

    def history(self) -> list[int]:
        return [*self.prompt_ids, *self.output_ids]


class GuidedRequests:
    r"""
    The guided scores of a serving engine's batch: for each request that asks for guidance,
    `alpha * log p_patient + sum_i beta_i * (log p_doctor_i - log p_ref_i)` (as [`DoctorLogitsProcessor`]), with the
    betas of that request; requests without guidance are left as they are and cost no doctor work.

    Each doctor (and each reference that is a model) runs once per step over the requests that weight it, in one
    batched forward with a cache of its own ([`RequestRows`]): requests join with their prompt, leave, and come back
    after a preemption (prefilled again, and counted).

    Args:
        doctors: as [`DoctorLogitsProcessor`]'s `doctors` (models, `DoctorModel`s, local paths or Hub ids), with
            `alpha`, `tokenizer`, `references` and `from_pretrained_kwargs` as there.

    Attributes:
        recorded_betas (`list[float]`): the betas the doctors record (what a request asking for `"default"` gets).
    """

    def __init__(self, doctors, alpha: float | None = None, tokenizer=None, references=None, **from_pretrained_kwargs):
        resolved = DoctorLogitsProcessor(
            doctors, alpha=alpha, tokenizer=tokenizer, references=references, **from_pretrained_kwargs
        )
        self.doctors, self.references, self.alpha = resolved.doctors, resolved.references, resolved.alpha
        self.recorded_betas = list(resolved.betas)
        self.vocab_size = resolved.vocab_size
        self._rows = [
            [RequestRows(stream) for stream in resolved.doctor_streams(index)] for index in range(len(self.doctors))
        ]
        self._num_ids = self.vocab_size or min(map(input_ids_of, [*self.doctors, *self.references]))
        self.requests: dict[Hashable, GuidedRequest] = {}
        self.resumed = 0  # requests added with output already (resumed after a preemption): prefilled again

    def parse_betas(self, value) -> list[float] | None:
        """A request's betas from what it asked for (see `request_betas`); `None` when it is not guided."""
        return request_betas(value, len(self.doctors), self.recorded_betas)

    def add(self, key: Hashable, prompt_ids: Sequence[int], output_ids: Sequence[int], betas) -> None:
        """Start guiding request `key` (again after a preemption, once `remove`d); `output_ids` may be the engine's
        live list (kept as it is, so it may grow). Ids may come as a list, a tuple, or a 1-d tensor or numpy array of
        ints in the vocabulary. `betas` as `parse_betas` takes them; a request without guidance is not kept.

        Raises:
            ValueError: before anything changes, for a key that is already guided (`remove` it first) or is not
                hashable, a prompt that is empty or is not token ids, output that is not token ids, or betas that
                `request_betas` refuses; each error names the argument, what was given and what is accepted.
        """
        check_key(key)
        if key in self.requests:
            raise ValueError(
                f"`key` {key!r} is already guided: `remove` it first (as when the engine preempts it), or give each "
                "request a key of its own."
            )
        prompt = token_ids("prompt_ids", prompt_ids, self._num_ids, self._ids_source)
        if not prompt:
            raise ValueError("`prompt_ids` is empty: a guided request needs at least one prompt token id.")
        output = token_ids("output_ids", output_ids, self._num_ids, self._ids_source)
        parsed = self.parse_betas(betas)
        if parsed is not None:
            self.resumed += bool(output)
            self.requests[key] = GuidedRequest(prompt, output_ids if isinstance(output_ids, list) else output, parsed)

    def remove(self, key: Hashable) -> None:
        """Stop guiding request `key` and free its rows. A key that is not guided (never added, added without
        guidance, or removed already) is ignored, so an engine may remove every request that leaves its batch
        without remembering which of them asked for guidance.

        Raises:
            ValueError: a key that is not hashable (no request can have it).
        """
        check_key(key)
        if self.requests.pop(key, None) is not None:
            for rows in self._all_rows():
                rows.remove([key])

    @property
    def _ids_source(self) -> str:
        return "the tokenizer's ids" if self.vocab_size is not None else "the ids every doctor and reference embeds"

    @property
    def prefills(self) -> int:
        """Prefills the doctors ran, one per request and doctor that weights it (a doctor's reference rows are part of
        its prefill): each guided request once, again after a preemption, and again if its history ever changed
        otherwise than by one token at a time."""
        return sum(rows[0].prefills for rows in self._rows)

    def apply(self, scores: torch.Tensor, keys_by_row: Mapping[int, Hashable]) -> torch.Tensor:
        """Write the guided scores into the rows of guided requests.

        Args:
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): the patient's logits, one row per request.
            keys_by_row (`Mapping[int, Hashable]`): the request of each row (rows of other requests are untouched).

        Return:
            `torch.Tensor`: `scores`, its guided rows overwritten in place.
        """
        guided = [(row, key) for row, key in keys_by_row.items() if key in self.requests]
        if not guided:
            return scores
        index = torch.tensor([row for row, _ in guided], dtype=torch.long, device=scores.device)
        patient = scores[index]
        vocab_size = patient.shape[-1] if self.vocab_size is None else min(self.vocab_size, patient.shape[-1])
        terms = [
            term
            for doctor_index in range(len(self.doctors))
            if (term := self._term(doctor_index, guided, vocab_size, patient)) is not None
        ]
        scores[index] = guided_scores(patient, terms, self.alpha, vocab_size).to(scores.dtype)
        return scores

    def _term(self, doctor_index: int, guided, vocab_size: int, patient: torch.Tensor) -> DoctorTerm | None:
        """The term of doctor `doctor_index` over the `guided` rows, or `None` when none of them weights it."""
        members = [(position, key) for position, (_, key) in enumerate(guided) if self._beta(key, doctor_index) != 0]
        if not members:
            return None
        histories = [(key, self.requests[key].history()) for _, key in members]
        outputs = [logits for rows in self._rows[doctor_index] for logits in rows.logits(histories)]
        length = max(len(history) for _, history in histories)
        name = getattr(self.doctors[doctor_index], "name_or_path", "") or f"doctor {doctor_index}"
        positions = torch.tensor([position for position, _ in members], dtype=torch.long, device=patient.device)
        beta = torch.zeros(len(guided), 1, dtype=patient.dtype, device=patient.device)
        beta[positions, 0] = torch.tensor(
            [self._beta(key, doctor_index) for _, key in members], dtype=patient.dtype, device=patient.device
        )

        def spread(logits: torch.Tensor, role: str) -> torch.Tensor:
            logps = checked_log_softmax(logits.to(patient.device), vocab_size, f"the {role} of {name!r}", length)
            full = logps.new_zeros(len(guided), logps.shape[-1])
            full[positions] = logps
            return full.to(patient.dtype)

        reference = self.references[doctor_index]
        if reference is None or (isinstance(reference, str) and reference == PATIENT):
            return DoctorTerm(beta, spread(outputs[0], "doctor"), reference)
        return DoctorTerm(beta, spread(outputs[0], "doctor"), spread(outputs[1], "reference"))

    def _beta(self, key: Hashable, doctor_index: int) -> float:
        return self.requests[key].betas[doctor_index]

    def _all_rows(self):
        return [rows for doctor_rows in self._rows for rows in doctor_rows]


def request_betas(value, num_doctors: int, recorded: list[float] | None = None) -> list[float] | None:
    """A request's betas: `None` or `0` (no guidance), `"default"` (`recorded`, the betas the doctors record), a
    number (every doctor) or one number per doctor, checked as `DoctorLogitsProcessor` checks its betas. `None` when
    the request is not guided (or asks for `"default"` and `recorded` is not known, as when only validating).

    Raises:
        ValueError: for anything else, naming what was given and what is accepted; for a `num_doctors` that is not a
            positive int, or `recorded` betas that are not `num_doctors` finite numbers.
    """
    if isinstance(num_doctors, bool) or not isinstance(num_doctors, numbers.Integral) or num_doctors < 1:
        raise ValueError(
            f"`num_doctors` must be a positive int (the engine's number of doctors), got {num_doctors!r}."
        )
    if recorded is not None:
        try:
            recorded = doctor_weights(recorded, num_doctors)
        except ValueError as error:
            raise ValueError(f"`recorded`: {error} Pass the betas the doctors record, or None.") from None
    if value is None:
        return None
    if isinstance(value, str) and value == RECORDED:
        betas = None if recorded is None else list(recorded)
    else:
        try:
            betas = doctor_weights(value, num_doctors)
        except ValueError as error:
            raise ValueError(
                f"doctor_betas={value!r}: {error} Per request, give a finite number (every doctor), a list of finite "
                f'numbers (one per doctor), 0 (no guidance) or "{RECORDED}" (the betas the doctors record).'
            ) from None
    return betas if betas is not None and any(beta != 0 for beta in betas) else None


# ------------------------------------------------------------------ argument checks
def check_key(key) -> None:
    """Refuse a request key that cannot be a dict key."""
    try:
        hash(key)
    except TypeError:
        raise ValueError(
            f"`key` must be hashable (a request id such as an int or a str), got {described(key)}."
        ) from None


def input_ids_of(model) -> int:
    """How many token ids `model` embeds (`sys.maxsize` for a reference that is not a model: no bound)."""
    if not isinstance(model, torch.nn.Module):
        return sys.maxsize
    return model.get_input_embeddings().num_embeddings


def token_ids(argument: str, value, num_ids: int, source: str) -> list[int]:
    """`value` (a list or tuple of ints, or a 1-d integer tensor or numpy array) as a list of ints.

    Raises:
        ValueError: naming `argument`, for anything else (a string, a 2-d batch, floats, bools) or an id outside
            `0 .. num_ids - 1` (`source` says where the bound comes from).
    """
    ids = None
    if not isinstance(value, (str, bytes)) and value is not None:
        try:
            ids = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            ids = None
    if ids is not None and ids.ndim == 1 and ids.numel() == 0:
        return []
    if ids is None or ids.ndim != 1 or ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"`{argument}` must be {TOKEN_IDS}, got {_given_ids(value)}.")
    outside = ((ids < 0) | (ids >= num_ids)).nonzero()
    if len(outside):
        position = int(outside[0, 0])
        raise ValueError(
            f"`{argument}` holds {int(ids[position])} at position {position}, not a token id: ids run from 0 to "
            f"{num_ids - 1} ({source}). Pass the ids the patient's tokenizer gives."
        )
    return ids.tolist()


def _given_ids(value) -> str:
    """`value` for an error about token ids: a tensor's or array's shape and dtype, else a short repr."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{reprlib.repr(value)} (a {type(value).__name__})"
