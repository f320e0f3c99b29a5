"""`TokenRewardCollator`: pads tokenized preference pairs with their token rewards into one doctor batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


REF_COLUMNS = ("ref_chosen_token_logps", "ref_rejected_token_logps")


@dataclass
class TokenRewardCollator:
    """Pads chosen and rejected rows into one batch, prompts left-padded and responses right-padded, so every
    response starts at the same column and the states s_0..s_T of row i sit at columns P-1..P+T-1.

    Each feature holds `prompt_ids`, `chosen_ids`, `chosen_token_rewards`, `rejected_ids` and
    `rejected_token_rewards` (each rewards list as long as its ids list), and optionally the precomputed reference
    log-probabilities `ref_chosen_token_logps` and `ref_rejected_token_logps` (as long as the ids).

    Returns, for B features (rows 0..B-1 chosen, B..2B-1 rejected, P the longest prompt, T the longest response):
        input_ids [2B, P+T], attention_mask [2B, P+T], completion_mask [2B, T] (1 on response tokens),
        token_rewards [2B, T] (0 on padding), and ref_token_logps [2B, T] (0 on padding) when the features have them.

    Args:
        pad_token_id: id written on padding (never attended to; with EOS == PAD the masks tell them apart).
        pad_to_multiple_of: round P and T up to a multiple of this.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def _round_up(self, width: int) -> int:
        if self.pad_to_multiple_of:
            return -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return width

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [feature["prompt_ids"] for feature in features] * 2
        completions = [feature["chosen_ids"] for feature in features] + [
            feature["rejected_ids"] for feature in features
        ]
        rewards = [feature["chosen_token_rewards"] for feature in features] + [
            feature["rejected_token_rewards"] for feature in features
        ]
        for row, (ids, row_rewards) in enumerate(zip(completions, rewards)):
            if len(ids) != len(row_rewards):
                side = "chosen" if row < len(features) else "rejected"
                raise ValueError(
                    f"Batch item {row % len(features)}: {side} response has {len(ids)} ids but "
                    f"{len(row_rewards)} token rewards; they must be the same length."
                )
        prompt_width = self._round_up(max(map(len, prompts)))
        completion_width = self._round_up(max(map(len, completions)))
        rows = len(prompts)
        input_ids = torch.full((rows, prompt_width + completion_width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(rows, prompt_width + completion_width, dtype=torch.long)
        completion_mask = torch.zeros(rows, completion_width, dtype=torch.long)
        token_rewards = torch.zeros(rows, completion_width, dtype=torch.float32)
        for row, (prompt, completion, row_rewards) in enumerate(zip(prompts, completions, rewards)):
            start = prompt_width - len(prompt)
            input_ids[row, start:prompt_width] = torch.tensor(prompt, dtype=torch.long)
            input_ids[row, prompt_width : prompt_width + len(completion)] = torch.tensor(completion, dtype=torch.long)
            attention_mask[row, start : prompt_width + len(completion)] = 1
            completion_mask[row, : len(completion)] = 1
            token_rewards[row, : len(completion)] = torch.tensor(row_rewards, dtype=torch.float32)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "completion_mask": completion_mask,
            "token_rewards": token_rewards,
        }
        if REF_COLUMNS[0] in features[0]:
            batch["ref_token_logps"] = self._pad_completion_values(
                [feature[REF_COLUMNS[0]] for feature in features] + [feature[REF_COLUMNS[1]] for feature in features],
                completion_mask,
            )
        return batch

    @staticmethod
    def _pad_completion_values(values: list[list[float]], completion_mask: torch.Tensor) -> torch.Tensor:
        """Per-token values of each response, right-padded with zeros to [2B, T]."""
        padded = torch.zeros(completion_mask.shape, dtype=torch.float32)
        for row, row_values in enumerate(values):
            if len(row_values) != int(completion_mask[row].sum()):
                raise ValueError(
                    f"Batch row {row}: {len(row_values)} reference log-probabilities for a response of "
                    f"{int(completion_mask[row].sum())} tokens; recompute them (precompute_ref_log_probs)."
                )
            padded[row, : len(row_values)] = torch.tensor(row_values, dtype=torch.float32)
        return padded
