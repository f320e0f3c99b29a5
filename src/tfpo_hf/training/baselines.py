"""Baseline doctors trained on the same data as TFPO, for the demo's comparisons.

`TrajectoryBTTrainer` (GenARM-style): the same doctor architecture, trained with a trajectory-level Bradley-Terry
loss on summed log-probabilities (no token rewards, no value head), decoded with the same `DoctorLogitsProcessor`.
"""

from __future__ import annotations

import torch

from .losses import trajectory_bradley_terry_loss
from .trainer import TFPOTrainer


class TrajectoryBTTrainer(TFPOTrainer):
    """Trains the doctor's LM so that beta * sum_t log pi(y_t) ranks chosen over rejected (Bradley-Terry).

    Same data, collator, logging and saving as `TFPOTrainer`, which it only changes in `loss_terms`; the token
    rewards are ignored.

    Args:
        bt_beta: the Bradley-Terry scale beta (GenARM's reward is beta * summed log-probability).
        *args, **kwargs: as `TFPOTrainer`.
    """

    uses_reference = False  # GenARM's reward is the doctor's own summed log-probability; it decodes by the mix

    def __init__(self, *args, bt_beta: float = 0.1, **kwargs):
        self.bt_beta = bt_beta
        super().__init__(*args, **kwargs)

    def loss_terms(self, inputs, logps, log_values, ref_logps):
        sequence_logps = torch.where(inputs["completion_mask"].bool(), logps, 0.0).sum(-1)
        pairs = sequence_logps.shape[0] // 2
        loss = trajectory_bradley_terry_loss(sequence_logps[:pairs], sequence_logps[pairs:], beta=self.bt_beta)
        return loss, {"bradley_terry": loss}
