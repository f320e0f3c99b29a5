"""Plain, cache-free guidance: what `DoctorLogitsProcessor` must reproduce, written to be obviously correct.

Every step re-runs each model over the whole sequence (no KV cache), with position ids `cumsum(mask) - 1`, and mixes
`alpha * log_softmax(patient) + sum_i beta_i * [log_softmax(doctor_i) - log_softmax(reference_i)]` over the shared
vocabulary, where a reference is `None` (the plain mix), `"patient"` or a separate model. Used by
the tests in `tests/guidance/` and `benchmarks/bench_generate.py`.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def full_attention_mask(input_ids: torch.LongTensor, prompt_mask: torch.Tensor | None, pad_token_id) -> torch.Tensor:
    """Mask of shape `input_ids.shape`: the prompt mask (rows repeated to the batch) then ones for generated tokens;
    without a prompt mask, a leading run of `pad_token_id` is padding."""
    if prompt_mask is None:
        return ((input_ids != pad_token_id).cumsum(-1) > 0).long()
    prompt_mask = prompt_mask.long().repeat_interleave(len(input_ids) // len(prompt_mask), dim=0)
    generated = input_ids.shape[1] - prompt_mask.shape[1]
    return torch.cat([prompt_mask, prompt_mask.new_ones((len(input_ids), generated))], dim=-1)


@torch.no_grad()
def last_logits(model, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits `(batch, vocab)` of `model` run over the whole `input_ids`, without a cache."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return outputs.logits[:, -1].float()


def mix(
    patient_logits: torch.Tensor,
    doctor_logits: list[torch.Tensor],
    betas,
    alpha: float,
    reference_logits: list | None = None,
) -> torch.Tensor:
    """`alpha * log_softmax(patient) + sum_i beta_i * [log_softmax(doctor_i) - log_softmax(reference_i)]`; a zero
    weight drops its model, columns a doctor does not have are `-inf`. `reference_logits[i]` is `None` (no
    reference), `"patient"`, or the reference's logits."""
    vocab_size = patient_logits.shape[-1]
    patient_logps = torch.log_softmax(patient_logits, dim=-1)
    mixed = torch.zeros_like(patient_logits)
    if alpha != 0:
        mixed = mixed + alpha * patient_logps
    for beta, logits, reference in zip(betas, doctor_logits, reference_logits or [None] * len(betas)):
        if beta == 0:
            continue
        logps = torch.log_softmax(logits[:, :vocab_size], dim=-1)
        if isinstance(reference, str):
            logps = logps - patient_logps[:, : logps.shape[-1]]
        elif reference is not None:
            logps = logps - torch.log_softmax(reference[:, :vocab_size], dim=-1)
        mixed[:, : logps.shape[-1]] += beta * logps
        mixed[:, logps.shape[-1] :] = float("-inf")
    return mixed


class ReferenceGuidanceProcessor(LogitsProcessor):
    """Cache-free guidance processor: recomputes every doctor (and reference model) over the full prefix at every
    call. `references[i]` is `None`, `"patient"` or a model."""

    def __init__(self, doctors, betas, alpha=1.0, attention_mask=None, pad_token_id=2, references=None):
        self.doctors = list(doctors)
        self.betas = list(betas)
        self.alpha = alpha
        self.attention_mask = attention_mask
        self.pad_token_id = pad_token_id
        self.references = list(references or [None] * len(self.doctors))

    def __call__(self, input_ids, scores):
        mask = full_attention_mask(input_ids, self.attention_mask, self.pad_token_id)
        doctor_logits = [last_logits(doctor, input_ids, mask) for doctor in self.doctors]
        reference_logits = [
            last_logits(reference, input_ids, mask) if isinstance(reference, torch.nn.Module) else reference
            for reference in self.references
        ]
        return mix(scores.float(), doctor_logits, self.betas, self.alpha, reference_logits).to(scores.dtype)


@torch.no_grad()
def reference_greedy(
    patient, doctors, betas, alpha, input_ids, attention_mask, max_new_tokens, eos_token_id=2, pad_token_id=2
):
    """Guided greedy decoding with no cache at all: both models re-run over the full sequence at every step. Rows stop
    at `eos_token_id` and are then filled with `pad_token_id`, as `generate` does.

    Returns the sequences `(batch, length)` and the mixed scores of every step `(batch, steps, vocab)`."""
    unfinished = torch.ones(len(input_ids), dtype=torch.bool)
    scores = []
    for _ in range(max_new_tokens):
        mask = full_attention_mask(input_ids, attention_mask, pad_token_id)
        patient_logits = last_logits(patient, input_ids, mask)
        doctor_logits = [last_logits(doctor, input_ids, mask) for doctor in doctors]
        scores.append(mix(patient_logits, doctor_logits, betas, alpha))
        next_tokens = torch.where(unfinished, scores[-1].argmax(-1), pad_token_id)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        unfinished &= next_tokens != eos_token_id
        if not unfinished.any():
            break
    return input_ids, torch.stack(scores, dim=1)
