"""Stage-1 token rewards moved from the patient's tokens onto a doctor's tokens when their tokenizers differ.

The patient scores each response in its own tokens; a doctor of another family trains on its own. Both spell the
same response bytes, so each reward moves by byte offsets. The rule: a token's reward goes to the doctor token
that holds its last byte, so a reward lands where the doctor has read all the text that earned it (a patient
token ending inside a doctor token gives its reward to that doctor token; a doctor token spanning several patient
tokens collects all their rewards). A token spelling no text (the end of turn) gives its reward to the doctor's
first such token at or after it, or else to the doctor token before it. Every reward lands once: each response's
total is conserved, except for rewards of text that `max_length` cut from the doctor's side, which are dropped as
truncation drops them for one tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..rewards.config import TokenRewardConfig
from ..rewards.preference_data import (
    SCORED_COLUMNS,
    as_explicit_example,
    cut_at_early_eos,
    format_completion,
    preference_format,
    tokenize_completion,
    tokenize_prompt,
    truncate_pair,
)
from .token_bytes import TokenBytes


def transfer_token_rewards(
    source_ids: Sequence[int],
    source_rewards: Sequence[float],
    source_bytes: TokenBytes,
    target_ids: Sequence[int],
    target_bytes: TokenBytes,
) -> list[float]:
    """The rewards of one response's `source_ids` moved onto its `target_ids` (see the module's rule).

    Returns:
        One reward per target id; their sum is the sum of `source_rewards` over the tokens whose text the target
        spells too.
    """
    source_ends, source_spells = _byte_ends(source_ids, source_bytes)
    target_ends, target_spells = _byte_ends(target_ids, target_bytes)
    moved = torch.zeros(len(target_ids), dtype=torch.float64)
    text_holders = target_spells.nonzero().flatten()  # targets spelling text: their ends strictly increase
    empty_targets = (~target_spells).nonzero().flatten()
    holder_ends, empty_ends = target_ends[text_holders], target_ends[empty_targets]
    for end, spells, reward in zip(source_ends.tolist(), source_spells.tolist(), source_rewards):
        if spells:
            holder = int(torch.searchsorted(holder_ends, end - 1, right=True))
            if holder < len(text_holders):
                moved[text_holders[holder]] += reward
            continue
        later_empty = empty_targets[empty_ends >= end]
        if len(later_empty):
            moved[later_empty[0]] += reward
        elif len(target_ids):
            earlier_text = text_holders[holder_ends <= end]
            moved[earlier_text[-1] if len(earlier_text) else len(target_ids) - 1] += reward
    return moved.tolist()


def _byte_ends(ids: Sequence[int], token_bytes: TokenBytes) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(ids),) the byte offset where each token's text ends, and whether it spells any text."""
    lengths = torch.tensor([len(token_bytes.by_id[index]) for index in ids], dtype=torch.long)
    return lengths.cumsum(0), lengths > 0


def retokenize_for_doctor(
    scored: Dataset,
    patient_tokenizer: PreTrainedTokenizerBase,
    doctor_tokenizer: PreTrainedTokenizerBase,
    config: TokenRewardConfig,
    num_proc: int | None = None,
) -> Dataset:
    """A dataset scored in the patient's tokens (`TokenRewardScorer.score_dataset`) in the doctor's tokens: the
    prompt in the doctor's chat template, each response tokenized by the doctor, its rewards moved by
    `transfer_token_rewards`. The text columns (`prompt`, `chosen`, `rejected` or their implicit form) must still
    be there."""
    dataset_format = preference_format([name for name in scored.column_names if name not in SCORED_COLUMNS])
    patient_bytes = TokenBytes.from_tokenizer(patient_tokenizer)
    doctor_bytes = TokenBytes.from_tokenizer(doctor_tokenizer)

    def completion_ids(texts) -> list[int]:
        ids = tokenize_completion(doctor_tokenizer, texts.completion, texts.conversational)
        return cut_at_early_eos(ids, doctor_tokenizer.eos_token_id)[0]

    def retokenize(example: dict[str, Any]) -> dict[str, Any]:
        texts = as_explicit_example(example, dataset_format)
        chosen = format_completion(texts["prompt"], texts["chosen"], doctor_tokenizer, config)
        rejected = format_completion(texts["prompt"], texts["rejected"], doctor_tokenizer, config)
        prompt_ids, chosen_ids, rejected_ids, _ = truncate_pair(
            tokenize_prompt(doctor_tokenizer, chosen.prompt, chosen.conversational),
            completion_ids(chosen),
            completion_ids(rejected),
            config.max_length,
            config.max_prompt_length,
            config.truncation_mode,
        )
        columns = {"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
        for side, ids in (("chosen", chosen_ids), ("rejected", rejected_ids)):
            columns[f"{side}_token_rewards"] = transfer_token_rewards(
                example[f"{side}_ids"], example[f"{side}_token_rewards"], patient_bytes, ids, doctor_bytes
            )
        return columns

    return scored.map(retokenize, num_proc=num_proc, desc="Moving token rewards onto the doctor's tokens")
