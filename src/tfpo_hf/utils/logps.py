"""Log-probabilities of chosen tokens and position ids: the small tensor helpers every stage shares."""

from __future__ import annotations

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.LongTensor:
    """Position ids `(B, T)` of a left-padded batch: `cumsum(mask) - 1` on real tokens, 0 on padding."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def selective_log_softmax(logits: torch.Tensor, index: torch.LongTensor) -> torch.Tensor:
    """log softmax(logits)[index] `(N, T)` in float32, from logits `(N, T, V)` and token ids `(N, T)`.

    Gathered logit minus logsumexp, one row at a time, so no `(N, T, V)` float32 log-softmax is materialised (the
    same trick as TRL's `selective_log_softmax`, upcasting every dtype to float32).
    """
    return torch.stack(
        [
            row_logits.float().gather(-1, row_ids[:, None]).squeeze(-1) - row_logits.float().logsumexp(-1)
            for row_logits, row_ids in zip(logits, index)
        ]
    )


def log_softmax_keeping_masked(scores: torch.Tensor) -> torch.Tensor:
    """`log_softmax` over the last dim that keeps `-inf` entries at `-inf`, also on rows that are `-inf` everywhere
    (where the plain `log_softmax` gives NaN)."""
    return torch.log_softmax(scores, dim=-1).masked_fill(torch.isneginf(scores), float("-inf"))


def completion_forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, object]:
    """Run `model` (a `DoctorModel` or a plain causal LM) over a `TokenRewardCollator` batch.

    Only the last T+1 columns (states s_0..s_T) go through the heads; the logits of s_0..s_{T-1} score the completion
    tokens y_1..y_T. Returns (log pi(y_{t+1} | s_t) `(2B, T)`, the model's raw outputs).
    """
    completion_width = inputs["completion_mask"].shape[1]
    prompt_width = inputs["input_ids"].shape[1] - completion_width
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=position_ids_from_mask(inputs["attention_mask"]),
        logits_to_keep=completion_width + 1,
        use_cache=False,
    )
    return selective_log_softmax(outputs.logits[:, :-1], inputs["input_ids"][:, prompt_width:]), outputs
