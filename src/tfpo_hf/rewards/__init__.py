"""Stage 1, token rewards: the patient, prompted as a positive and a negative face, scores every completion token;
the log-likelihood gap becomes a sparse, signed reward. Its config, the scorer, preference-data formats and their
checks, and the HTML/PNG views of the rewards."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "TokenRewardConfig": ".config",
    "TokenRewardScorer": ".scorer",
    "TokenRewards": ".scorer",
    "reward_statistics": ".scorer",
    "reward_by_token": ".scorer",
    "token_rewards_from_logps": ".scorer",
    "load_preference_dataset": ".preference_data",
    "render_token_rewards_html": ".visualize",
    "plot_token_rewards_png": ".visualize",
}
__all__ = [
    "TokenRewardConfig",
    "TokenRewardScorer",
    "TokenRewards",
    "load_preference_dataset",
    "plot_token_rewards_png",
    "render_token_rewards_html",
    "reward_by_token",
    "reward_statistics",
    "token_rewards_from_logps",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .config import TokenRewardConfig
    from .preference_data import load_preference_dataset
    from .scorer import TokenRewards, TokenRewardScorer, reward_by_token, reward_statistics, token_rewards_from_logps
    from .visualize import plot_token_rewards_png, render_token_rewards_html
