"""Preference-dataset formats and tokenization: the neutral prompt the doctor sees, the patient's two face
prompts, and response ids shared by both faces.

Accepted formats are TRL's preference formats:

- explicit prompt: `prompt`, `chosen`, `rejected` (strings, or conversational lists of messages);
- implicit prompt: `chosen`, `rejected` (the shared prefix is the prompt, found by `trl.extract_prompt`);
- already scored: `prompt_ids`, `chosen_ids`, `chosen_token_rewards`, `rejected_ids`, `rejected_token_rewards`.

Chat data goes through the tokenizer's chat template; each face adds its system prompt as the system message
(prepended to an existing system message). Plain-text data joins a face and the prompt with
`TokenRewardConfig.face_template` (default `"{system_prompt}\\n\\n{prompt}"`), and its responses end with EOS
as in TRL. The response text is cut from the templated prompt + response at their common prefix (TRL's
boundary), tokenized once, and the same ids are scored under both faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedTokenizerBase
from trl import extract_prompt, maybe_apply_chat_template

from ..utils.hub import looks_like_local_path
from .config import TokenRewardConfig


if TYPE_CHECKING:
    from datasets import Dataset


SCORED_COLUMNS = ("prompt_ids", "chosen_ids", "chosen_token_rewards", "rejected_ids", "rejected_token_rewards")
ACCEPTED_FORMATS = (
    "explicit prompt ['prompt', 'chosen', 'rejected'], implicit prompt ['chosen', 'rejected'] "
    "(standard text or conversational lists of messages), or already scored "
    f"{list(SCORED_COLUMNS)}"
)


def preference_format(column_names: Sequence[str]) -> str:
    """Which accepted format `column_names` holds: "scored", "explicit" or "implicit".

    Raises:
        ValueError: naming the columns found and the formats accepted.
    """
    columns = set(column_names)
    if set(SCORED_COLUMNS) <= columns:
        return "scored"
    if {"prompt", "chosen", "rejected"} <= columns:
        return "explicit"
    if {"chosen", "rejected"} <= columns:
        return "implicit"
    raise ValueError(
        f"The dataset has columns {sorted(columns)}, which is not a preference dataset. "
        f"Accepted formats: {ACCEPTED_FORMATS}. Rename your columns (dataset.rename_column) to match one of them."
    )


@dataclass
class FacedCompletion:
    """Texts of one (prompt, response): the neutral prompt, the two face prompts and the response."""

    prompt: str
    positive_prompt: str
    negative_prompt: str
    completion: str
    conversational: bool
    is_empty: bool


def _with_system_prompt(messages: list[dict[str, Any]], system_prompt: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        merged = {**messages[0], "content": f"{system_prompt}\n\n{messages[0]['content']}"}
        return [merged] + list(messages[1:])
    return [{"role": "system", "content": system_prompt}] + list(messages)


def _completion_is_empty(completion: str | list[dict[str, Any]]) -> bool:
    if isinstance(completion, str):
        return not completion.strip()
    return all(not str(message.get("content", "")).strip() for message in completion)


def format_completion(
    prompt: str | list[dict[str, Any]],
    completion: str | list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    config: TokenRewardConfig,
) -> FacedCompletion:
    """Build the neutral and face prompts and the response text for one (prompt, response)."""
    if isinstance(prompt, list) and isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    if isinstance(prompt, str) and isinstance(completion, list):
        prompt = [{"role": "user", "content": prompt}]  # decided here: trl's is_conversational depends on set order
    example = {"prompt": prompt, "completion": completion}
    if isinstance(prompt, list):
        if tokenizer.chat_template is None:
            raise ValueError(
                "The dataset is conversational but the tokenizer has no chat template. Set tokenizer.chat_template "
                "or convert the dataset to plain text prompts."
            )
        neutral = maybe_apply_chat_template(example, tokenizer)
        positive = maybe_apply_chat_template(
            {"prompt": _with_system_prompt(prompt, config.positive_system_prompt), "completion": completion}, tokenizer
        )
        negative = maybe_apply_chat_template(
            {"prompt": _with_system_prompt(prompt, config.negative_system_prompt), "completion": completion}, tokenizer
        )
        return FacedCompletion(
            prompt=neutral["prompt"],
            positive_prompt=positive["prompt"],
            negative_prompt=negative["prompt"],
            completion=neutral["completion"],
            conversational=True,
            is_empty=_completion_is_empty(completion),
        )
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ValueError(f"Mixed formats: prompt {type(prompt).__name__}, response {type(completion).__name__}.")
    return FacedCompletion(
        prompt=prompt,
        positive_prompt=config.face_template.format(system_prompt=config.positive_system_prompt, prompt=prompt),
        negative_prompt=config.face_template.format(system_prompt=config.negative_system_prompt, prompt=prompt),
        completion=completion,
        conversational=False,
        is_empty=_completion_is_empty(completion),
    )


def tokenize_prompt(tokenizer: PreTrainedTokenizerBase, text: str, conversational: bool) -> list[int]:
    """Prompt ids: special tokens (BOS) are added for plain text only; a chat template already has them."""
    return tokenizer(text, add_special_tokens=not conversational)["input_ids"]


def tokenize_completion(tokenizer: PreTrainedTokenizerBase, text: str, conversational: bool) -> list[int]:
    """Response ids, tokenized once; plain-text responses end with EOS (chat templates close the turn)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not conversational and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids


def cut_at_early_eos(ids: list[int], eos_token_id: int | None) -> tuple[list[int], bool]:
    """Completion ids cut after their first EOS when another EOS follows it (the text held the EOS token's literal
    text: nothing after it can be generated, so nothing after it is trained). Returns the ids and whether they were
    cut; the last EOS (the one the template or tokenization adds) is the natural end and stays."""
    if eos_token_id is None or ids.count(eos_token_id) < 2:
        return ids, False
    return ids[: ids.index(eos_token_id) + 1], True


def truncate_pair(
    prompt_ids: list[int],
    chosen_ids: list[int],
    rejected_ids: list[int],
    max_length: int | None,
    max_prompt_length: int | None,
    truncation_mode: str,
) -> tuple[list[int], list[int], list[int], bool]:
    """Apply `max_prompt_length` (keep the prompt's end), then `max_length` to prompt + each response.

    Returns the truncated prompt, chosen and rejected ids and whether anything was cut.
    """
    original = (len(prompt_ids), len(chosen_ids), len(rejected_ids))
    if max_prompt_length is not None and len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
    if max_length is not None:
        longest = max(len(chosen_ids), len(rejected_ids))
        if truncation_mode == "keep_end" and len(prompt_ids) + longest > max_length:
            keep = max(1, max_length - longest)
            prompt_ids = prompt_ids[-keep:]
        room = max_length - len(prompt_ids)
        if room < 1:
            raise ValueError(
                f"The prompt has {len(prompt_ids)} tokens, which leaves no room for the response under "
                f"max_length={max_length}. Raise max_length or set max_prompt_length."
            )
        chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
    truncated = (len(prompt_ids), len(chosen_ids), len(rejected_ids)) != original
    return prompt_ids, chosen_ids, rejected_ids, truncated


def as_explicit_example(example: dict[str, Any], dataset_format: str) -> dict[str, Any]:
    """`prompt`/`chosen`/`rejected` of an explicit or implicit-prompt example."""
    if dataset_format == "implicit":
        return extract_prompt({"chosen": example["chosen"], "rejected": example["rejected"]})
    return {"prompt": example["prompt"], "chosen": example["chosen"], "rejected": example["rejected"]}


DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def load_data_file(path: Path, split: str = "train") -> Dataset:
    """The rows of one data file (`DATA_FILE_BUILDERS` names its format) as a `Dataset`, `split` a slice of them.

    Raises:
        ValueError: naming the file when it has no rows (empty, blank, a CSV header alone, a JSON `[]`), where
            `datasets` raises `StopIteration` or "corresponds to no data".
    """
    from datasets import load_dataset_builder

    no_rows = (
        f"Dataset file {str(path)!r} has no rows: give it at least one preference pair (columns prompt / chosen / "
        "rejected, or chosen / rejected)."
    )
    if _is_blank(path):
        raise ValueError(no_rows)
    builder = load_dataset_builder(DATA_FILE_BUILDERS[path.suffix], data_files=str(path))
    builder.download_and_prepare()
    if not builder.info.splits["train"].num_examples:
        raise ValueError(no_rows)
    return builder.as_dataset(split=split)


def _is_blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (read in chunks: a large file stops at its first one)."""
    with open(path, "rb") as file:
        while chunk := file.read(1 << 16):
            if chunk.strip():
                return False
    return True


def load_preference_dataset(
    name_or_path: str, config_name: str | None = None, split: str = "train", max_examples: int | None = None
):
    """Load a preference dataset from a `save_to_disk` folder, a data file, or the Hub (`datasets.load_dataset`)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(name_or_path).expanduser()
    # a data-file name like 'prefs.jsonl' is also a valid Hub repo id: the suffix says it is meant as a file
    if (looks_like_local_path(str(name_or_path)) or path.suffix in DATA_FILE_BUILDERS) and not path.exists():
        raise ValueError(
            f"Dataset path {str(path)!r} does not exist: check the path (a Hub id looks like 'org/name')."
        )
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise ValueError(f"{str(path)!r} has splits {list(dataset)}, not {split!r}: pick one of them.")
            dataset = dataset[split]
    elif path.is_file() and path.suffix in DATA_FILE_BUILDERS:
        if split.split("[")[0] != "train":
            raise ValueError(
                f"A single data file ({path.name}) has only a 'train' split, so split {split!r} would silently be its "
                "training rows: give the evaluation rows their own file, or a slice such as 'train[90%:]'."
            )
        dataset = load_data_file(path, split)
    else:
        dataset = load_dataset(name_or_path, config_name, split=split)
    if max_examples is not None:
        dataset = dataset.select(range(min(max_examples, len(dataset))))
    return dataset
