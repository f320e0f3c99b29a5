"""Tiny preference datasets (conversational pairs, already-scored rows) and chat messages for the tests."""

import random

from datasets import Dataset


def user(text: str) -> list[dict]:
    """A one-message conversation: `text` from the user."""
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    """A one-message conversation: `text` from the assistant."""
    return [{"role": "assistant", "content": text}]


def letter_preference_dataset(size: int, seed: int = 0) -> Dataset:
    """Conversational pairs where the chosen reply is made of vowels and the rejected one, as long, of consonants."""
    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        prompt = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6)))
        length = rng.randint(2, 6)  # equal lengths: accuracy compares summed log-probs
        chosen = "".join(rng.choice("aeiou") for _ in range(length))
        rejected = "".join(rng.choice("xzqwv") for _ in range(length))
        rows.append(
            {
                "prompt": user(prompt),
                "chosen": assistant(chosen),
                "rejected": assistant(rejected),
            }
        )
    return Dataset.from_list(rows)


def scored_dataset(size: int, seed: int = 0, zero_rewards: bool = False) -> Dataset:
    """Already-scored rows (the five token-reward columns) with random ids and signed rewards."""
    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        chosen_ids = [rng.randint(3, 258) for _ in range(rng.randint(1, 7))]
        rejected_ids = [rng.randint(3, 258) for _ in range(rng.randint(1, 7))]
        rows.append(
            {
                "prompt_ids": [1] + [rng.randint(3, 258) for _ in range(rng.randint(1, 5))],
                "chosen_ids": chosen_ids,
                "chosen_token_rewards": [0.0 if zero_rewards else rng.random() for _ in chosen_ids],
                "rejected_ids": rejected_ids,
                "rejected_token_rewards": [0.0 if zero_rewards else -rng.random() for _ in rejected_ids],
            }
        )
    return Dataset.from_list(rows)
