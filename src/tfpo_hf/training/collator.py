"""`TokenRewardCollator`: pads tokenized preference pairs with their token rewards into one doctor batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


REF_COLUMNS = ("ref_chosen_token_logps", "ref_rejected_token_logps")


@dataclass
class TokenRewardCollator:
    r"""
    Data collator for [`TFPOTrainer`]: pads tokenized preference pairs and their token rewards into one doctor batch,
    the chosen completions in the first `batch_size` rows and the rejected ones in the next `batch_size`. Prompts are
    left-padded and completions right-padded, so every completion starts at the same column and the states
    s_0..s_T of every row sit in the same columns (`prompt_length - 1` to `prompt_length + T - 1`).

    Each feature holds `prompt_ids`, `chosen_ids`, `chosen_token_rewards`, `rejected_ids` and `rejected_token_rewards`
    (each rewards list as long as its ids list), and optionally the precomputed reference log-probabilities
    `ref_chosen_token_logps` and `ref_rejected_token_logps` (as long as the ids).

    Args:
        pad_token_id (`int`):
            The id written on padding. It is never attended to, so it may equal EOS (the masks tell them apart).
        pad_to_multiple_of (`int`, *optional*):
            If set, `prompt_length` and `completion_length` are each rounded up to a multiple of this value.

    Return:
        `dict[str, torch.Tensor]`, for `batch_size` features (`prompt_length`: the longest prompt,
        `completion_length`: the longest completion):

        - `input_ids` (`torch.LongTensor` of shape `(2 * batch_size, prompt_length + completion_length)`).
        - `attention_mask` (`torch.LongTensor` of shape `(2 * batch_size, prompt_length + completion_length)`).
        - `completion_mask` (`torch.LongTensor` of shape `(2 * batch_size, completion_length)`): 1 on completion
          tokens.
        - `token_rewards` (`torch.FloatTensor` of shape `(2 * batch_size, completion_length)`): 0 on padding.
        - `ref_token_logps` (`torch.FloatTensor` of shape `(2 * batch_size, completion_length)`): 0 on padding; only
          when the features hold reference log-probabilities.

    Raises:
        `ValueError`: a completion whose token rewards (or reference log-probabilities) are not as long as its ids.

    Examples:

    ```python
    >>> from tfpo_hf import TokenRewardCollator

    >>> collator = TokenRewardCollator(pad_token_id=0)
    >>> batch = collator([
    ...     {"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "chosen_token_rewards": [0.5, 0.0],
    ...      "rejected_ids": [10], "rejected_token_rewards": [-0.75]},
    ...     {"prompt_ids": [11], "chosen_ids": [12, 13, 14], "chosen_token_rewards": [0.0, 0.25, 0.0],
    ...      "rejected_ids": [15, 16], "rejected_token_rewards": [0.0, -0.5]},
    ... ])
    >>> print(batch["input_ids"])  # chosen rows, then rejected rows; prompts left-padded, completions right-padded
    tensor([[ 5,  6,  7,  8,  9,  0],
            [ 0,  0, 11, 12, 13, 14],
            [ 5,  6,  7, 10,  0,  0],
            [ 0,  0, 11, 15, 16,  0]])
    >>> print(batch["attention_mask"])
    tensor([[1, 1, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 1],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0]])
    >>> print(batch["completion_mask"])
    tensor([[1, 1, 0],
            [1, 1, 1],
            [1, 0, 0],
            [1, 1, 0]])
    >>> print(batch["token_rewards"])
    tensor([[ 0.5000,  0.0000,  0.0000],
            [ 0.0000,  0.2500,  0.0000],
            [-0.7500,  0.0000,  0.0000],
            [ 0.0000, -0.5000,  0.0000]])

    ```
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
        """Per-token values of each completion, right-padded with zeros to the shape of `completion_mask`,
        `(2 * batch_size, completion_length)`."""
        padded = torch.zeros(completion_mask.shape, dtype=torch.float32)
        for row, row_values in enumerate(values):
            if len(row_values) != int(completion_mask[row].sum()):
                raise ValueError(
                    f"Batch row {row}: {len(row_values)} reference log-probabilities for a response of "
                    f"{int(completion_mask[row].sum())} tokens; recompute them (precompute_ref_log_probs)."
                )
            padded[row, : len(row_values)] = torch.tensor(row_values, dtype=torch.float32)
        return padded
