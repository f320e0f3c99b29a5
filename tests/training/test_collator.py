"""TokenRewardCollator: layout of prompts, responses and rewards in the padded doctor batch."""

import pytest
import torch

from tfpo_hf import TokenRewardCollator


FEATURES = [
    {
        "prompt_ids": [5, 6, 7],
        "chosen_ids": [10, 11],
        "chosen_token_rewards": [0.5, 0.0],
        "rejected_ids": [20, 21, 22],
        "rejected_token_rewards": [-0.1, -0.2, -0.3],
    },
    {
        "prompt_ids": [8],
        "chosen_ids": [12, 13, 14, 15],
        "chosen_token_rewards": [0.1, 0.2, 0.3, 0.4],
        "rejected_ids": [23],
        "rejected_token_rewards": [-0.9],
    },
]


def test_prompts_left_padded_responses_right_padded_rewards_aligned():
    batch = TokenRewardCollator(pad_token_id=2)(FEATURES)
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 10, 11, 2, 2],
        [2, 2, 8, 12, 13, 14, 15],
        [5, 6, 7, 20, 21, 22, 2],
        [2, 2, 8, 23, 2, 2, 2],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 0, 0, 0],
    ]
    assert batch["completion_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]]
    expected_rewards = torch.tensor([[0.5, 0.0, 0, 0], [0.1, 0.2, 0.3, 0.4], [-0.1, -0.2, -0.3, 0], [-0.9, 0, 0, 0]])
    assert torch.allclose(batch["token_rewards"], expected_rewards)


def test_pad_to_multiple_of_rounds_both_parts():
    batch = TokenRewardCollator(pad_token_id=0, pad_to_multiple_of=4)(FEATURES)
    assert batch["completion_mask"].shape == (4, 4)
    assert batch["input_ids"].shape == (4, 8)
    assert batch["token_rewards"][:, :4].abs().sum() > 0


def test_reward_length_mismatch_names_the_item():
    broken = [dict(FEATURES[0]), dict(FEATURES[1], rejected_token_rewards=[-0.9, 0.1])]
    with pytest.raises(ValueError, match="Batch item 1: rejected response has 1 ids but 2 token rewards"):
        TokenRewardCollator(pad_token_id=2)(broken)
