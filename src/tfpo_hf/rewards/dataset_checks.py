"""Checks of a preference dataset at the entry of stage 1 (`TokenRewardScorer.score_dataset`) and stage 2
(`TFPOTrainer`), before any long work starts: what the library cannot use raises a `ValueError` naming the row and
the fix; what it can use but is probably a mistake warns once per dataset, with a count."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

from datasets import Dataset

from .preference_data import preference_format


MESSAGE_ROLES = ("system", "user", "assistant", "tool")
RESPONSE_COLUMNS = ("chosen", "rejected")
LARGEST_REWARD = 1e6  # beyond this a float32 prefix sum loses every other term; stage 1 gives |r| < 1


def check_preference_dataset(dataset: Dataset, dataset_name: str = "train") -> str:
    """Check a dataset in one of TRL's preference formats (or already scored) and return its format.

    Raises:
        ValueError: on 0 rows, unknown columns, a missing value, a value that is neither text nor a list of
            messages, a message without a string `role` / `content`, or an empty conversational prompt.
    """
    if len(dataset) == 0:
        raise ValueError(f"The {dataset_name} dataset has 0 rows: give it at least one preference pair.")
    dataset_format = preference_format(dataset.column_names)
    if dataset_format == "scored":
        return dataset_format
    columns = ["prompt", *RESPONSE_COLUMNS] if dataset_format == "explicit" else list(RESPONSE_COLUMNS)
    counts: Counter[str] = Counter()
    for index, row in enumerate(dataset.select_columns(columns)):
        for column in columns:
            _check_value(row[column], column, index)
        if row["chosen"] == row["rejected"]:
            counts["identical"] += 1
        if isinstance(row.get("prompt"), str) and isinstance(row["chosen"], list):
            counts["text prompt"] += 1
    _warn_counts(counts, dataset_name, len(dataset))
    return dataset_format


def check_scored_dataset(dataset: Dataset, vocab_size: int, dataset_name: str = "train") -> None:
    """Check a scored dataset before training: ids inside the doctor's vocabulary, rewards of a usable size.

    Raises:
        ValueError: on 0 rows, a token id outside `[0, vocab_size)`, or a reward larger than `LARGEST_REWARD`.
    """
    if len(dataset) == 0:
        raise ValueError(f"The {dataset_name} dataset has 0 rows: give it at least one preference pair.")
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        for index, ids in enumerate(dataset[column]):
            bad = next((token for token in ids if not 0 <= token < vocab_size), None)
            if bad is not None:
                raise ValueError(
                    f"Example {index} of the {dataset_name} dataset: `{column}` holds token id {bad}, outside the "
                    f"doctor's vocabulary of {vocab_size} ids. Score the dataset with the doctor's own tokenizer."
                )
    counts: Counter[str] = Counter()
    for column in ("chosen_token_rewards", "rejected_token_rewards"):
        for index, rewards in enumerate(dataset[column]):
            largest = max((abs(r) for r in rewards if not math.isnan(r)), default=0.0)
            if largest > LARGEST_REWARD:
                raise ValueError(
                    f"Example {index} of the {dataset_name} dataset: `{column}` holds a reward of {largest:g}: the "
                    "flow's prefix sums would drown every other term in float32. Rescale the rewards (stage 1 gives "
                    "values in (-1, 1))."
                )
            counts["large rewards"] += largest > 1
    counts["identical"] = sum(c == r for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"]))
    _warn_counts(counts, dataset_name, len(dataset))


def _check_value(value: Any, column: str, index: int) -> None:
    where = f"Example {index}, column `{column}`"
    if isinstance(value, str):
        return
    if value is None:
        raise ValueError(f"{where} is missing (None): fill it or drop the row (dataset.filter).")
    if not isinstance(value, list):
        raise ValueError(f"{where} is a {type(value).__name__}: give a string or a list of chat messages.")
    if column == "prompt" and not value:
        raise ValueError(f"{where} is an empty conversation: give at least one message (e.g. the user's turn).")
    for position, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(
                f"{where}, message {position} has no `role`: each message is a dict like "
                "{'role': 'user', 'content': '...'}."
            )
        if message["role"] not in MESSAGE_ROLES:
            raise ValueError(f"{where}, message {position} has role {message['role']!r}: use one of {MESSAGE_ROLES}.")
        if not isinstance(message.get("content"), str):
            raise ValueError(
                f"{where}, message {position} has {type(message.get('content')).__name__} content: only text "
                "content (a string) is supported."
            )


WARNINGS = {
    "identical": "have chosen identical to rejected: their tokens are pushed up and down at once and teach "
    "nothing. Drop them (dataset.filter(lambda r: r['chosen'] != r['rejected'])).",
    "text prompt": "have a plain-text prompt with conversational responses: the prompt is used as one user "
    "message. Make it a list of messages to say so explicitly.",
    "large rewards": "have token rewards with |r| > 1, outside stage 1's range (-1, 1): check the reward scale.",
}


def _warn_counts(counts: Counter, dataset_name: str, num_rows: int) -> None:
    for key, count in counts.items():
        if count:
            warnings.warn(f"{count} of {num_rows} rows of the {dataset_name} dataset {WARNINGS[key]}", stacklevel=3)
