"""The stage-1 formula and what it produces: from the two faces' log-probabilities of a completion to its sparse,
signed token rewards (`token_rewards_from_logprobs`, `TokenRewards`), and the counts of a scored dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .token_reward_config import TokenRewardConfig


def token_rewards_from_logprobs(
    positive_logprobs: torch.Tensor, negative_logprobs: torch.Tensor, sign: float, config: TokenRewardConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Delta, S and r of one response from its per-token log-probabilities under the two faces.

    Args:
        positive_logprobs, negative_logprobs: [T] log p_face(y_t | x_face, y_<t).
        sign: +1 for a chosen response, -1 for a rejected one.

    Returns:
        delta [T] = |lp_pos - lp_neg|, normalized [T] = tanh(delta / ((mean delta + eps) * tau)) in [0, 1),
        rewards [T] = sign * normalized * 1[normalized > theta].
    """
    delta = (positive_logprobs.double() - negative_logprobs.double()).abs()
    if delta.numel() == 0:
        return delta, delta.clone(), delta.clone()
    normalized = torch.tanh(delta / ((delta.mean() + config.eps) * config.tau))
    rewards = torch.where(normalized > config.theta, sign * normalized, torch.zeros_like(normalized))
    return delta, normalized, rewards


@dataclass
class TokenRewards:
    """Per-token rewards of one response, with the quantities they come from (all lists of length T)."""

    token_ids: list[int]
    tokens: list[str]
    rewards: list[float]
    delta: list[float]
    normalized: list[float]

    @property
    def nonzero_fraction(self) -> float:
        return sum(r != 0 for r in self.rewards) / max(len(self.rewards), 1)


@dataclass
class ScoringStats:
    """Counts reported after scoring a dataset."""

    examples: int = 0
    empty_completions: int = 0
    truncated_examples: int = 0
    completion_tokens: int = 0
    nonzero_rewards: int = 0

    @property
    def nonzero_fraction(self) -> float:
        return self.nonzero_rewards / max(self.completion_tokens, 1)
