"""Preparing the datasets of `TFPOTrainer`: conversion to `datasets.Dataset`, stage-1 scoring when one has no token
rewards, then validation and truncation of every scored example."""

from __future__ import annotations

import warnings
from typing import Any

from accelerate import PartialState
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..cross_tokenizer.reward_transfer import retokenize_for_doctor
from ..rewards.dataset_checks import as_dataset, check_preference_dataset, check_scored_dataset
from ..rewards.preference_data import SCORED_COLUMNS, truncate_pair
from ..rewards.scorer import TokenRewardScorer
from .config import TFPOConfig


def validate_scored_example(example: dict[str, Any], index: int, args: TFPOConfig) -> dict[str, Any]:
    """Check one scored example (lengths, empty prompt, finite rewards) and apply `max_length` to ids and rewards."""
    for side in ("chosen", "rejected"):
        ids, rewards = example[f"{side}_ids"], example[f"{side}_token_rewards"]
        if len(ids) != len(rewards):
            raise ValueError(
                f"Example {index}: `{side}_ids` has {len(ids)} tokens but `{side}_token_rewards` has {len(rewards)} "
                "values; each rewards list must be as long as its ids list (re-run TokenRewardScorer.score_dataset)."
            )
        if not all(map(lambda r: r == r and abs(r) != float("inf"), rewards)):
            raise ValueError(f"Example {index}: `{side}_token_rewards` holds NaN or inf values.")
    if not example["prompt_ids"]:
        raise ValueError(
            f"Example {index} has an empty prompt: the doctor needs at least one prompt token for the state s_0. "
            "Give the example a prompt (or use a tokenizer that adds a BOS token)."
        )
    prompt_ids, chosen_ids, rejected_ids, _ = truncate_pair(
        example["prompt_ids"],
        example["chosen_ids"],
        example["rejected_ids"],
        args.max_length,
        args.max_prompt_length,
        args.truncation_mode,
    )
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "chosen_token_rewards": example["chosen_token_rewards"][: len(chosen_ids)],
        "rejected_token_rewards": example["rejected_token_rewards"][: len(rejected_ids)],
    }


def prepare_scored_dataset(
    dataset: Dataset,
    patient: PreTrainedModel | None,
    processing_class: PreTrainedTokenizerBase,
    args: TFPOConfig,
    dataset_name: str,
    vocab_size: int,
    patient_processing_class: PreTrainedTokenizerBase | None = None,
) -> Dataset:
    """Score `dataset` with the patient if it has no token rewards, then validate and truncate it.

    With a `patient_processing_class` other than `processing_class` (a doctor of another tokenizer), the patient
    scores in its own tokens and the rewards then move onto the doctor's (`retokenize_for_doctor`). Scoring runs on
    the main process first; the other processes then load its cached result (same fingerprint), so no rank redoes
    the work of another.
    """
    if check_preference_dataset(dataset, dataset_name) != "scored":
        if patient is None:
            raise ValueError(
                f"The {dataset_name} dataset has no token rewards ({list(SCORED_COLUMNS)}). Either pass "
                "`patient_model=` to TFPOTrainer so it scores the dataset before training, or score it yourself "
                "with `TokenRewardScorer(patient, tokenizer).score_dataset(dataset)`."
            )
        patient_tokenizer = patient_processing_class or processing_class
        config = args.to_token_reward_config()
        with PartialState().main_process_first():
            dataset = TokenRewardScorer(patient, patient_tokenizer, config).score_dataset(
                dataset, num_proc=args.dataset_num_proc
            )
            if patient_tokenizer is not processing_class:
                dataset = retokenize_for_doctor(
                    dataset, patient_tokenizer, processing_class, config, num_proc=args.dataset_num_proc
                )
    check_scored_dataset(dataset, vocab_size, dataset_name)
    with PartialState().main_process_first():
        dataset = dataset.map(
            validate_scored_example,
            with_indices=True,
            fn_kwargs={"args": args},
            num_proc=args.dataset_num_proc,
            desc=f"Checking the {dataset_name} dataset",
        )
    if all(
        not any(rewards)
        for column in ("chosen_token_rewards", "rejected_token_rewards")
        for rewards in dataset[column]
    ):
        warnings.warn(
            f"Every token reward of the {dataset_name} dataset is zero: the flow loss then only shapes the value "
            "head and the doctor will not learn a preference. Lower theta or check the face prompts.",
            stacklevel=4,
        )
    return dataset


def prepare_datasets(
    train_dataset: Any,
    eval_dataset: Any,
    patient: PreTrainedModel | None,
    processing_class: PreTrainedTokenizerBase,
    args: TFPOConfig,
    vocab_size: int,
    patient_processing_class: PreTrainedTokenizerBase | None = None,
) -> tuple[Dataset | None, Dataset | dict[str, Dataset] | None]:
    """`TFPOTrainer`'s train and eval datasets, each converted (`as_dataset`), scored if needed, checked and truncated
    (`prepare_scored_dataset`).

    `eval_dataset` may be a dict of named datasets (a `DatasetDict` too); a dict whose values are all lists is one
    dataset given as columns.
    """

    def prepare(data: Any, argument: str, dataset_name: str) -> Dataset:
        dataset = as_dataset(data, argument)
        return prepare_scored_dataset(
            dataset, patient, processing_class, args, dataset_name, vocab_size, patient_processing_class
        )

    if train_dataset is not None:
        train_dataset = prepare(train_dataset, "train_dataset", "train")
    if isinstance(eval_dataset, dict) and not all(isinstance(values, list) for values in eval_dataset.values()):
        eval_dataset = {name: prepare(data, f"eval_dataset[{name!r}]", name) for name, data in eval_dataset.items()}
    elif eval_dataset is not None:
        eval_dataset = prepare(eval_dataset, "eval_dataset", "eval")
    return train_dataset, eval_dataset
