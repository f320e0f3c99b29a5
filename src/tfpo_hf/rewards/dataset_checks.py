"""Checks of a preference dataset at the entry of stage 1 (`TokenRewardScorer.score_dataset`) and stage 2
(`TFPOTrainer`), before any long work starts: data in the other kinds users have in hand (a `pandas.DataFrame`, a
dict of column lists, a list of row dicts) becomes a `datasets.Dataset`; what the library cannot use raises a
`ValueError` (a `TypeError` for an object of the wrong kind) naming the argument or the row, and the fix; what it can
use but is probably a mistake warns once per dataset, with a count."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from .preference_data import preference_format


MESSAGE_ROLES = ("system", "user", "assistant", "tool")
RESPONSE_COLUMNS = ("chosen", "rejected")
LARGEST_REWARD = 1e6  # beyond this a float32 prefix sum loses every other term; stage 1 gives |r| < 1
ACCEPTED_DATA = "a `datasets.Dataset`, a `pandas.DataFrame`, a dict of column lists or a list of row dicts"


def as_dataset(data: Any, argument: str) -> Dataset:
    """`data` as a `datasets.Dataset`: a `pandas.DataFrame` (its index dropped), a dict of column lists and a list of
    row dicts are converted; a `Dataset` is returned as is.

    Args:
        data: the dataset, in one of the kinds above.
        argument (`str`): the argument it was passed as, named in the errors (`"train_dataset"`).

    Raises:
        ValueError: on a streaming `IterableDataset` (every row is checked, and scored, before the work starts), a
            `DatasetDict` (pick a split), a dict whose columns have different lengths, or a column Arrow cannot hold
            (values of different kinds).
        TypeError: on any other object.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (IterableDataset, IterableDatasetDict)):
        raise ValueError(
            f"`{argument}` is a streaming `datasets.{type(data).__name__}`: streaming is not supported, since every "
            "row is checked (and scored by the patient if it has no token rewards) before the work starts. "
            "Materialise it: `Dataset.from_generator(lambda: (yield from dataset), features=dataset.features)`, or "
            "load it with `load_dataset(..., streaming=False)`."
        )
    if isinstance(data, DatasetDict):
        raise ValueError(
            f"`{argument}` is a DatasetDict with splits {list(data)}: pass one split, e.g. "
            f"`{argument}=dataset[{next(iter(data), 'train')!r}]`."
        )
    try:
        if isinstance(data, pd.DataFrame):
            return Dataset.from_pandas(data, preserve_index=False)
        if isinstance(data, dict) and all(isinstance(column, list) for column in data.values()):
            return _dataset_from_columns(data, argument)
        if isinstance(data, list) and all(isinstance(row, dict) for row in data):
            return Dataset.from_list(data)
    except pa.ArrowException as error:
        raise ValueError(
            f"`{argument}` cannot become a `datasets.Dataset`: {error}. Each column must hold values of one kind in "
            "every row (all lists, or all strings): fix or drop the rows that differ."
        ) from error
    raise TypeError(f"`{argument}` must be {ACCEPTED_DATA}, got {_describe(data)}.")


def _dataset_from_columns(columns: dict[str, list], argument: str) -> Dataset:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"`{argument}` is a dict of columns of different lengths {lengths}: each column needs one value per row."
        )
    return Dataset.from_dict(columns)


def _describe(data: Any) -> str:
    """The kind of `data`, and what it holds when it is a container of the wrong things."""
    if isinstance(data, dict):
        name, value = next((k, v) for k, v in data.items() if not isinstance(v, list))
        return f"a dict whose column {name!r} is a {type(value).__name__}, not a list of values"
    if isinstance(data, list):
        row = next(row for row in data if not isinstance(row, dict))
        return f"a list holding a {type(row).__name__}, not only row dicts"
    if isinstance(data, str):
        return f"the string {data!r}: load it first, with `tfpo_hf.rewards.load_preference_dataset` or `load_dataset`"
    return f"a {type(data).__name__}"


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
        ValueError: on 0 rows, a missing (None) value, a token id outside `[0, vocab_size)`, or a reward larger than
            `LARGEST_REWARD`.
    """
    if len(dataset) == 0:
        raise ValueError(f"The {dataset_name} dataset has 0 rows: give it at least one preference pair.")
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        for index, ids in enumerate(dataset[column]):
            _check_number_list(ids, column, index, dataset_name)
            bad = next((token for token in ids if not 0 <= token < vocab_size), None)
            if bad is not None:
                raise ValueError(
                    f"Example {index} of the {dataset_name} dataset: `{column}` holds token id {bad}, outside the "
                    f"doctor's vocabulary of {vocab_size} ids. Score the dataset with the doctor's own tokenizer."
                )
    counts: Counter[str] = Counter()
    for column in ("chosen_token_rewards", "rejected_token_rewards"):
        for index, rewards in enumerate(dataset[column]):
            _check_number_list(rewards, column, index, dataset_name)
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


def _check_number_list(values: Any, column: str, index: int, dataset_name: str) -> None:
    """A scored column holds, in each row, a list of numbers: refuse a missing list or a missing (None) value before
    any arithmetic meets it."""
    where = f"Example {index} of the {dataset_name} dataset: `{column}`"
    fix = "Fill it, drop the row (dataset.filter), or re-score the dataset with TokenRewardScorer.score_dataset."
    if not isinstance(values, list):
        raise ValueError(f"{where} is {values!r}, not a list with one number per token. {fix}")
    if None in values:
        raise ValueError(f"{where} holds None at position {values.index(None)}, where a number belongs. {fix}")


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
