"""Bad or hostile input to stage 2 (`TFPOTrainer` and `TFPOConfig`): scored datasets, training arguments and doctors;
each case asserts the exception and the key words of its message (the problem and the fix), or the warning, or that
the input works and gives the right result.

Checkpoint cases live in tests/training/test_checkpoints.py, a doctor's saving and loading cases in
tests/doctor/test_saving.py."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict
from peft import LoraConfig

from tfpo_hf import DoctorModel, TFPOTrainer
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args, tiny_trainer


def build_trainer(tmp_path, dataset, model=None, **kwargs):
    """A TFPOTrainer on a tiny doctor (constructing it runs every dataset check)."""
    args = make_args(tmp_path / "out", max_steps=1, per_device_train_batch_size=2)
    return tiny_trainer(args, dataset, model, **kwargs)


# ---------------------------------------------------------------------------------------------- scored datasets
def scored_with(**changes):
    rows = scored_dataset(4).to_list()
    for key, value in changes.items():
        rows[1][key] = value
    return Dataset.from_list(rows)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"chosen_ids": [1, 999, 5]}, "token id 999, outside the doctor's vocabulary"),
        ({"prompt_ids": [-1, 5]}, "token id -1"),
        ({"chosen_token_rewards": None}, None),  # replaced below by a reward of 1e20
    ],
)
def test_scored_ids_outside_the_vocabulary_are_refused(tmp_path, changes, words):
    if words is None:
        rows = scored_dataset(4).to_list()
        rows[1]["chosen_token_rewards"] = [1e20] * len(rows[1]["chosen_ids"])
        dataset, words = Dataset.from_list(rows), "reward of 1e\\+20.*Rescale"
    else:
        dataset = scored_with(**changes)
    with pytest.raises(ValueError, match=words):
        build_trainer(tmp_path, dataset)


def test_scored_rewards_above_one_warn(tmp_path):
    rows = scored_dataset(4).to_list()
    rows[0]["chosen_token_rewards"] = [5.0] * len(rows[0]["chosen_ids"])
    with pytest.warns(UserWarning, match=r"1 of 4 rows .*\|r\| > 1"):
        build_trainer(tmp_path, Dataset.from_list(rows))


def test_scored_nan_reward_names_the_example(tmp_path):
    rows = scored_dataset(4).to_list()
    rows[2]["rejected_token_rewards"] = [math.nan] * len(rows[2]["rejected_ids"])
    with pytest.raises(ValueError, match="Example 2.*NaN or inf"):
        build_trainer(tmp_path, Dataset.from_list(rows))


def test_scored_length_mismatch_names_the_fix(tmp_path):
    rows = scored_dataset(4).to_list()
    rows[0]["chosen_token_rewards"] = rows[0]["chosen_token_rewards"][:-1]
    with pytest.raises(ValueError, match="as long as its ids list"):
        build_trainer(tmp_path, Dataset.from_list(rows))


def test_scored_empty_prompt_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty prompt"):
        build_trainer(tmp_path, scored_with(prompt_ids=[]))


def test_scored_identical_pair_warns(tmp_path):
    rows = scored_dataset(4).to_list()
    rows[3]["rejected_ids"], rows[3]["rejected_token_rewards"] = rows[3]["chosen_ids"], rows[3]["chosen_token_rewards"]
    with pytest.warns(UserWarning, match="1 of 4 rows .* identical"):
        build_trainer(tmp_path, Dataset.from_list(rows))


def test_empty_scored_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="0 rows"):
        build_trainer(tmp_path, scored_dataset(4).select([]))


def test_unscored_dataset_without_a_patient_says_how_to_score_it(tmp_path):
    with pytest.raises(ValueError, match="patient_model="):
        build_trainer(tmp_path, Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]))


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "field, value",
    [
        ("max_prompt_length", -1),
        ("theta", 1.0),
        ("tau", 0.0),
        ("guidance_beta", math.nan),
        ("flow_reference", "x"),
        ("lambda_value", -1.0),
        ("subtb_max_span", 0),
        ("model_init_kwargs", "{not json"),
    ],
)
def test_bad_training_arguments_name_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        make_args(tmp_path / "out", **{field: value})


# ---------------------------------------------------------------------------------------------- doctors and trainer
def test_doctor_narrower_than_the_tokenizer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ids 200 to 258 have no row in the LM head of the doctor"):
        build_trainer(
            tmp_path, scored_dataset(4), DoctorModel(tiny_causal_lm(vocab_size=200)), patient_model=tiny_causal_lm()
        )


def test_doctor_saved_with_another_tokenizer_is_refused_by_the_trainer(tmp_path):
    other = tiny_tokenizer()
    other.add_tokens(["<extra>"])
    tiny_causal_lm().save_pretrained(tmp_path / "doctor")
    other.save_pretrained(tmp_path / "doctor")
    with pytest.raises(ValueError, match="differs from the patient tokenizer"):
        build_trainer(tmp_path, scored_dataset(4), str(tmp_path / "doctor"))


def test_bf16_doctor_without_mixed_precision_warns(tmp_path):
    with pytest.warns(UserWarning, match="mixed precision is off"):
        build_trainer(tmp_path, scored_dataset(4), DoctorModel(tiny_causal_lm().to(torch.bfloat16)))


def test_lora_on_a_truncated_copy_is_refused(tmp_path):
    lora = LoraConfig(r=2, target_modules="all-linear")
    with pytest.raises(ValueError, match="truncated copy of the patient"):
        build_trainer(tmp_path, scored_dataset(4), DoctorModel.from_patient(tiny_causal_lm(), 1), peft_config=lora)


def test_peft_config_on_a_doctor_that_has_an_adapter_is_refused(tmp_path):
    lora = LoraConfig(r=2, target_modules="all-linear")
    with pytest.raises(ValueError, match="already holds a PEFT adapter"):
        build_trainer(tmp_path, scored_dataset(4), DoctorModel(tiny_lora_doctor(tiny_causal_lm())), peft_config=lora)


def test_model_of_the_wrong_type_is_refused(tmp_path):
    with pytest.raises(TypeError, match="must be a DoctorModel, a causal LM or a model id"):
        build_trainer(tmp_path, scored_dataset(4), 42)


# ---------------------------------------------------------------------------------------------- second pass: data kinds
SCORED_KINDS = {
    "pandas.DataFrame": lambda rows: pd.DataFrame(rows),
    "dict of lists": lambda rows: {key: [row[key] for row in rows] for key in rows[0]},
    "list of dicts": lambda rows: rows,
}


@pytest.mark.parametrize("kind", list(SCORED_KINDS))
def test_train_and_eval_data_of_other_kinds_are_converted(tmp_path, kind):
    rows = scored_dataset(4).to_list()
    data = SCORED_KINDS[kind](rows)
    trainer = build_trainer(tmp_path, data, eval_dataset=SCORED_KINDS[kind](rows))
    for dataset in (trainer.train_dataset, trainer.eval_dataset):
        assert isinstance(dataset, Dataset) and dataset["chosen_ids"] == [row["chosen_ids"] for row in rows]


def test_eval_dataset_dict_of_named_datasets_of_any_kind_is_evaluated_per_name(tmp_path):
    rows = scored_dataset(4).to_list()
    trainer = build_trainer(
        tmp_path,
        scored_dataset(4),
        eval_dataset=DatasetDict(small=Dataset.from_list(rows[:2])) | {"df": pd.DataFrame(rows)},
    )
    assert {name: len(dataset) for name, dataset in trainer.eval_dataset.items()} == {"small": 2, "df": 4}


@pytest.mark.parametrize("argument", ["train_dataset", "eval_dataset"])
def test_streaming_dataset_is_refused_saying_how_to_materialise_it(tmp_path, argument):
    streaming = scored_dataset(4).to_iterable_dataset()
    datasets = {"train_dataset": scored_dataset(4), argument: streaming}
    with pytest.raises(
        ValueError, match=f"`{argument}` is a streaming .*not supported.*from_generator.*streaming=False"
    ):
        build_trainer(tmp_path, datasets.pop("train_dataset"), **datasets)


def test_dataset_dict_as_train_dataset_asks_for_a_split(tmp_path):
    with pytest.raises(ValueError, match=r"`train_dataset` is a DatasetDict .*`train_dataset=dataset\['train'\]`"):
        build_trainer(tmp_path, DatasetDict(train=scored_dataset(4)))


@pytest.mark.parametrize(
    "datasets, argument",
    [
        ({"train_dataset": "scored.jsonl"}, "`train_dataset`"),
        ({"train_dataset": 3.5}, "`train_dataset`"),
        ({"eval_dataset": {"val": 7}}, r"`eval_dataset\['val'\]`"),
    ],
)
def test_data_of_another_kind_is_refused_naming_the_argument(tmp_path, datasets, argument):
    datasets = {"train_dataset": scored_dataset(4), **datasets}
    with pytest.raises(TypeError, match=f"{argument} must be a `datasets.Dataset`, a `pandas.DataFrame`"):
        build_trainer(tmp_path, datasets.pop("train_dataset"), **datasets)


@pytest.mark.parametrize(
    "column, value, words",
    [
        ("chosen_token_rewards", "None at 1", r"`chosen_token_rewards` holds None at position 1, where a number"),
        ("rejected_token_rewards", None, r"`rejected_token_rewards` is None, not a list"),
        ("prompt_ids", "None at 0", r"`prompt_ids` holds None at position 0"),
    ],
)
def test_none_in_a_number_column_names_the_column_and_the_row(tmp_path, column, value, words):
    rows = scored_dataset(4).to_list()
    if isinstance(value, str):  # "None at <position>"
        rows[1][column][int(value.split()[-1])] = None
    else:
        rows[1][column] = value
    with pytest.raises(ValueError, match=f"Example 1 of the train dataset: {words}.*re-score"):
        build_trainer(tmp_path, Dataset.from_list(rows))


def test_a_reward_column_of_numbers_instead_of_lists_names_the_column(tmp_path):
    rows = [row | {"chosen_token_rewards": 0.9} for row in scored_dataset(4).to_list()]
    with pytest.raises(ValueError, match=r"Example 0 of the train dataset: `chosen_token_rewards` is 0.9, not a list"):
        build_trainer(tmp_path, rows)


def test_a_column_mixing_lists_and_numbers_names_the_argument_and_the_column(tmp_path):
    frame = pd.DataFrame(scored_dataset(4).to_list())
    frame.at[1, "chosen_ids"] = 5
    with pytest.raises(ValueError, match=r"`train_dataset` cannot become a `datasets.Dataset`: .*column chosen_ids"):
        build_trainer(tmp_path, frame)


# ---------------------------------------------------------------------------------------------- second pass: trainer
@pytest.mark.parametrize("with_args", [True, False])
def test_trainer_without_a_model_names_the_argument(tmp_path, with_args):
    args = {"args": make_args(tmp_path / "out")} if with_args else {}
    with pytest.raises(TypeError, match=r"TFPOTrainer needs `model`, the doctor to train: .* got None"):
        TFPOTrainer(None, train_dataset=scored_dataset(4), processing_class=tiny_tokenizer(), **args)


def test_trainer_without_a_tokenizer_for_an_in_memory_doctor_names_processing_class(tmp_path):
    with pytest.raises(ValueError, match=r"TFPOTrainer needs `processing_class`: .*built in memory.*from_pretrained"):
        TFPOTrainer(DoctorModel(tiny_causal_lm()), args=make_args(tmp_path / "out"), train_dataset=scored_dataset(4))


def test_trainer_without_a_tokenizer_for_a_checkpoint_without_one_names_processing_class(tmp_path):
    tiny_causal_lm().save_pretrained(tmp_path / "doctor")  # no tokenizer files
    with pytest.raises(ValueError, match=r"TFPOTrainer needs `processing_class`: .*none could be loaded from"):
        TFPOTrainer(str(tmp_path / "doctor"), args=make_args(tmp_path / "out"), train_dataset=scored_dataset(4))


def test_trainer_with_a_tokenizer_name_instead_of_a_tokenizer_names_processing_class(tmp_path):
    with pytest.raises(TypeError, match=r"TFPOTrainer needs `processing_class`: .*got 'HuggingFaceTB/SmolLM2-135M'"):
        TFPOTrainer(
            DoctorModel(tiny_causal_lm()),
            args=make_args(tmp_path / "out"),
            train_dataset=scored_dataset(4),
            processing_class="HuggingFaceTB/SmolLM2-135M",
        )


# ---------------------------------------------------------------------------------------------- second pass: numbers
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("theta", np.float32(0.5), 0.5),
        ("guidance_beta", torch.tensor(4.0), 4.0),
        ("reward_batch_size", np.int64(2), 2),
        ("subtb_max_span", torch.tensor(3), 3),
        ("learning_rate", np.float64(3e-4), 3e-4),  # a TrainingArguments field
    ],
)
def test_numpy_scalars_and_0d_tensors_in_training_arguments_are_read_as_numbers(tmp_path, field, value, expected):
    args = make_args(tmp_path / "out", **{field: value})
    got = getattr(args, field)
    assert got == pytest.approx(expected) and type(got) is type(expected)
    assert type(args.to_token_reward_config().theta) is float and args.to_json_string()


@pytest.mark.parametrize(
    "field, value",
    [
        ("gamma", "0.1"),
        ("theta", "0.5"),
        ("value_head_learning_rate", "1e-3"),
        ("value_head_learning_rate", 0.0),
        ("pad_to_multiple_of", "8"),
        ("dataset_num_proc", 0),
    ],
)
def test_a_string_where_a_number_belongs_names_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}` must be .*, got {value!r}"):
        make_args(tmp_path / "out", **{field: value})


def test_braces_in_the_face_prompts_are_kept(tmp_path):
    args = make_args(tmp_path / "out", positive_system_prompt="Answer in {language}.")
    assert args.to_token_reward_config().positive_system_prompt == "Answer in {language}."
