"""The guided scores of stage 3, from the patient's scores and each doctor's log-probabilities: the arithmetic that
`DoctorLogitsProcessor` (one `generate()` call) and the serving integrations (a batch of requests with betas of
their own) share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..utils.logps import log_softmax_keeping_masked
from .loading import PATIENT


@dataclass
class DoctorTerm:
    """One doctor's contribution to the guided scores: `beta * (doctor_logps - reference_logps)`.

    Attributes:
        beta (`float` or `torch.Tensor` of shape `(batch_size, 1)`): the doctor's weight, one for every row or one
            per row (a row with weight 0 gets nothing from this doctor, whatever its log-probabilities hold).
        doctor_logps (`torch.Tensor` of shape `(batch_size, doctor_vocab_size)`): the doctor's next-token
            log-probabilities.
        reference (`torch.Tensor` of shape `(batch_size, reference_vocab_size)`, `"patient"` or `None`): the
            reference's log-probabilities, the patient's own (`"patient"`), or no reference (the mix).
    """

    beta: float | torch.Tensor
    doctor_logps: torch.Tensor
    reference: torch.Tensor | str | None = None


def guided_scores(
    scores: torch.Tensor, terms: Sequence[DoctorTerm], alpha: float, vocab_size: int, normalize: bool = False
) -> torch.Tensor:
    """`alpha * log_softmax(scores) + sum_i beta_i * (log p_doctor_i - log p_ref_i)` over the first `vocab_size` ids.

    Args:
        scores (`torch.Tensor` of shape `(batch_size, width)`): the patient's logits or log-probabilities; columns
            from `vocab_size` on (LM-head padding) are not tokens.
        terms (`Sequence[DoctorTerm]`): the active doctors' terms, in the dtype of `scores`.
        alpha (`float`): the patient's weight.
        vocab_size (`int`): the number of real token ids, at most `width`.
        normalize (`bool`): subtract the log-sum-exp, so the result holds log-probabilities.

    Return:
        `torch.Tensor` of shape `(batch_size, width)`: the guided scores. An id is `-inf` when the patient rules it out
        (while the patient's scores are used: `alpha != 0` or a `"patient"` reference), when a weighted doctor or
        reference gives it probability 0 or lacks it (narrower vocabulary), and from `vocab_size` on.
    """
    if vocab_size < scores.shape[-1]:  # the patient's LM-head padding rows: not tokens
        scores = torch.nn.functional.pad(scores[:, :vocab_size], (0, scores.shape[-1] - vocab_size), value=-math.inf)
    patient_logps = log_softmax_keeping_masked(scores)
    mixed = alpha * patient_logps if alpha != 0 else torch.zeros_like(scores)
    uses_patient = alpha != 0 or any(isinstance(t.reference, str) and t.reference == PATIENT for t in terms)
    impossible = torch.isneginf(patient_logps) if uses_patient else torch.zeros_like(scores, dtype=torch.bool)
    impossible[:, vocab_size:] = True
    for term in terms:
        weighted = _rows_weighted(term.beta, scores)
        doctor_logps = term.doctor_logps
        impossible[:, : doctor_logps.shape[-1]] |= torch.isneginf(doctor_logps) & weighted
        difference = doctor_logps
        if term.reference is not None:
            reference_logps = patient_logps if isinstance(term.reference, str) else term.reference
            width = min(doctor_logps.shape[-1], reference_logps.shape[-1])
            impossible[:, :width] |= torch.isneginf(reference_logps[:, :width]) & weighted
            difference = doctor_logps[:, :width] - reference_logps[:, :width]
        contribution = term.beta * difference
        if isinstance(term.beta, torch.Tensor):  # rows of weight 0: nothing, not 0 * (-inf)
            contribution = contribution.masked_fill(~weighted, 0.0)
        mixed[:, : difference.shape[-1]] += contribution
        impossible[:, difference.shape[-1] :] |= weighted
    # Overwrites the +-inf and NaN that weighted -inf entries leave behind (negative weights, inf - inf).
    mixed = mixed.masked_fill(impossible, float("-inf"))
    return log_softmax_keeping_masked(mixed) if normalize else mixed


def checked_log_softmax(logits: torch.Tensor, vocab_size: int, source: str, length: int) -> torch.Tensor:
    """log-softmax `(batch_size, <= vocab_size)` of a doctor's or reference's next-token logits, refusing NaN and
    +inf (they would turn every guided score into NaN, and greedy decoding into token 0 forever); `source` and
    `length` (the sequence length reached) name where they came from in the error."""
    logits = logits[:, :vocab_size].float()
    if not bool(logits.amax() < math.inf):  # one reduction: amax is NaN or +inf exactly when one is
        raise ValueError(
            f"{source[0].upper()}{source[1:]} gave NaN or +inf logits at sequence length {length}: check its weights "
            "and dtype (float16 overflows; use float32 or bfloat16)."
        )
    return log_softmax_keeping_masked(logits)


def _rows_weighted(beta: float | torch.Tensor, scores: torch.Tensor) -> torch.Tensor | bool:
    """Which rows a weight applies to: `(batch_size, 1)` booleans for a weight per row, `True` for a number."""
    if isinstance(beta, torch.Tensor):
        return (beta != 0).to(scores.device).reshape(-1, 1)
    return True
