"""`tfpo_hf.losses`, the public home the design promises for the TFPO losses (pure tensor functions, tested and
benchmarked alone); they are defined with the rest of stage 2, in `tfpo_hf.training.losses`."""

from .training.losses import subtrajectory_balance_loss, value_discrimination_loss


__all__ = ["subtrajectory_balance_loss", "value_discrimination_loss"]
