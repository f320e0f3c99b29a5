"""A GenARM-style baseline: the same doctor architecture, trained with a trajectory-level Bradley-Terry loss on
summed log-probabilities (no token rewards, no value head), decoded with the same `DoctorLogitsProcessor`."""

from __future__ import annotations

import torch

from ..losses import trajectory_bradley_terry_loss
from ..trainer import TFPOTrainer, completion_forward


class TrajectoryBTTrainer(TFPOTrainer):
    """Trains the doctor's LM so that beta * sum_t log pi(y_t) ranks chosen over rejected (Bradley-Terry).

    Same data, collator, logging and saving as `TFPOTrainer`; the token rewards are ignored.

    Args:
        bt_beta: the Bradley-Terry scale beta (GenARM's reward is beta * summed log-probability).
        *args, **kwargs: as `TFPOTrainer`.
    """

    uses_reference = False  # GenARM's reward is the doctor's own summed log-probability; it decodes by the mix

    def __init__(self, *args, bt_beta: float = 0.1, **kwargs):
        self.bt_beta = bt_beta
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        logprobs, outputs = completion_forward(model, inputs)
        sequence_logps = torch.where(completion_mask.bool(), logprobs, 0.0).sum(-1)
        pairs = sequence_logps.shape[0] // 2
        loss = trajectory_bradley_terry_loss(sequence_logps[:pairs], sequence_logps[pairs:], beta=self.bt_beta)
        rewards = inputs["token_rewards"] * completion_mask
        self._record_metrics(mode, {"loss/bradley_terry": loss}, logprobs, outputs.log_values, rewards, completion_mask)
        return (loss, outputs) if return_outputs else loss
