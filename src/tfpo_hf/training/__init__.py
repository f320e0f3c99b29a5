"""Stage 2, TFPO: `TFPOConfig` and `TFPOTrainer` (a `transformers.Trainer`), the token-reward collator, the losses,
the reference log-probabilities of the anchored flow, checkpoints and resuming, and the baseline trainers."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "TFPOConfig": ".config",
    "TFPOTrainer": ".trainer",
    "TokenRewardCollator": ".collator",
    "subtrajectory_balance_loss": ".losses",
    "value_discrimination_loss": ".losses",
    "TrajectoryBTTrainer": ".baselines",
}
__all__ = [
    "TFPOConfig",
    "TFPOTrainer",
    "TokenRewardCollator",
    "TrajectoryBTTrainer",
    "subtrajectory_balance_loss",
    "value_discrimination_loss",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .baselines import TrajectoryBTTrainer
    from .collator import TokenRewardCollator
    from .config import TFPOConfig
    from .losses import subtrajectory_balance_loss, value_discrimination_loss
    from .trainer import TFPOTrainer
