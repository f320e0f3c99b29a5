"""Bad or hostile input to stage 2 (`TFPOTrainer` and `TFPOConfig`): scored datasets, training arguments and doctors;
each case asserts the exception and the key words of its message (the problem and the fix), or the warning, or that
the input works and gives the right result.

Checkpoint cases live in tests/training/test_checkpoints.py, a doctor's saving and loading cases in
tests/doctor/test_saving.py."""

import math

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from tfpo_hf import DoctorModel
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
