"""Bad or hostile input through the public API and the CLI: each case asserts the exception and the key words of
its message (the problem and the fix), or the warning, or that the input works and gives the right result.

Checkpoint and loading cases live in tests/test_checkpoints.py."""

import json
import math
import warnings

import pytest
import torch
from datasets import Dataset, DatasetDict
from peft import LoraConfig
from tfpo_fixtures import scored_dataset
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor, DoctorModel, GuidedModel, TFPOConfig, TFPOTrainer, TokenRewardScorer
from tfpo_hf.cli import main
from tfpo_hf.rewards.config import TokenRewardConfig
from tfpo_hf.rewards.preference_data import load_preference_dataset
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer


@pytest.fixture(scope="module")
def scorer():
    return TokenRewardScorer(tiny_causal_lm(seed=1), tiny_tokenizer(), TokenRewardConfig(batch_size=4))


def args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        max_steps=1,
        per_device_train_batch_size=2,
        save_strategy="no",
        disable_tqdm=True,
    )
    return TFPOConfig(**{**values, **overrides})


def build_trainer(tmp_path, dataset, model=None, **kwargs):
    """A TFPOTrainer on a tiny doctor (constructing it runs every dataset check)."""
    model = DoctorModel(tiny_causal_lm()) if model is None else model
    return TFPOTrainer(model, args=args(tmp_path), train_dataset=dataset, processing_class=tiny_tokenizer(), **kwargs)


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------------------------------------- preference datasets
BAD_ROWS = [
    ({"prompt": "Hi", "chosen": None, "rejected": "No."}, "missing (None)"),
    ({"prompt": "Hi", "chosen": 3, "rejected": "No."}, "is a int"),
    ({"prompt": "Hi", "chosen": {"text": "a"}, "rejected": "No."}, "is a dict"),
    ({"prompt": [{"content": "Hi"}], "chosen": assistant("a"), "rejected": assistant("b")}, "no `role`"),
    ({"prompt": ["Hi"], "chosen": assistant("a"), "rejected": assistant("b")}, "no `role`"),
    ({"prompt": [{"role": "bot", "content": "Hi"}], "chosen": assistant("a"), "rejected": assistant("b")}, "has role"),
    (
        {"prompt": user("Hi"), "chosen": [{"role": "assistant", "content": ["a"]}], "rejected": assistant("b")},
        "list content",
    ),
    ({"prompt": user("Hi"), "chosen": [{"role": "assistant"}], "rejected": assistant("b")}, "NoneType content"),
    ({"prompt": [], "chosen": assistant("a"), "rejected": assistant("b")}, "empty conversation"),
]


@pytest.mark.parametrize("row, words", BAD_ROWS)
def test_unusable_rows_are_refused_naming_row_and_column(scorer, row, words):
    dataset = Dataset.from_list([row])  # one row: Arrow cannot hold a column of mixed types
    with pytest.raises(ValueError, match="Example 0") as error:
        scorer.score_dataset(dataset)
    assert words in str(error.value)


def test_empty_dataset_is_refused(scorer):
    empty = Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})
    with pytest.raises(ValueError, match="0 rows"):
        scorer.score_dataset(empty)


def test_wrong_columns_name_the_accepted_formats(scorer):
    with pytest.raises(ValueError, match="not a preference dataset.*rename_column"):
        scorer.score_dataset(Dataset.from_list([{"question": "Hi", "good": "a", "bad": "b"}]))


def test_chat_data_without_a_chat_template_is_refused():
    scorer = TokenRewardScorer(tiny_causal_lm(), tiny_tokenizer(chat_template=False))
    with pytest.raises(ValueError, match="no chat template"):
        scorer.score_dataset(
            Dataset.from_list([{"prompt": user("Hi"), "chosen": assistant("a"), "rejected": assistant("b")}])
        )


def test_identical_chosen_and_rejected_warns_with_a_count(scorer):
    rows = [{"prompt": "Hi", "chosen": "same", "rejected": "same"}] * 2 + [
        {"prompt": "Hi", "chosen": "a", "rejected": "b"}
    ]
    with pytest.warns(UserWarning, match="2 of 3 rows .* chosen identical to rejected"):
        scorer.score_dataset(Dataset.from_list(rows))


def test_plain_prompt_with_chat_responses_is_one_user_message_whatever_the_hash_seed(scorer):
    mixed = Dataset.from_list([{"prompt": "Hi", "chosen": assistant("Hello!"), "rejected": assistant("No.")}])
    explicit = Dataset.from_list([{"prompt": user("Hi"), "chosen": assistant("Hello!"), "rejected": assistant("No.")}])
    with pytest.warns(UserWarning, match="plain-text prompt with conversational responses"):
        got = scorer.score_dataset(mixed)
    expected = scorer.score_dataset(explicit)
    for column in ("prompt_ids", "chosen_ids", "chosen_token_rewards", "rejected_token_rewards"):
        assert got[column] == expected[column]


def test_literal_eos_text_in_a_response_cuts_it_there_with_a_warning(scorer):
    tokenizer = scorer.tokenizer
    row = {
        "prompt": user("Hi"),
        "chosen": assistant(f"Yes{tokenizer.eos_token}ignored tail"),
        "rejected": assistant("No"),
    }
    with pytest.warns(UserWarning, match="1 responses hold the EOS token's text"):
        scored = scorer.score_dataset(Dataset.from_list([row]))
    chosen = scored[0]["chosen_ids"]
    assert chosen.count(tokenizer.eos_token_id) == 1 and chosen[-1] == tokenizer.eos_token_id
    assert "ignored" not in tokenizer.decode(chosen)
    assert len(scored[0]["chosen_token_rewards"]) == len(chosen)


def test_empty_response_works_with_zero_rewards(scorer):
    scored = scorer.score_dataset(Dataset.from_list([{"prompt": "Hi", "chosen": "Hello there", "rejected": ""}]))
    assert all(r == 0 for r in scored[0]["rejected_token_rewards"])


def test_implicit_prompt_dataset_works(scorer):
    rows = [{"chosen": user("Hi") + assistant("Hello!"), "rejected": user("Hi") + assistant("Go away.")}]
    scored = scorer.score_dataset(Dataset.from_list(rows))
    assert scored[0]["prompt_ids"] and scored[0]["chosen_ids"] != scored[0]["rejected_ids"]


# ---------------------------------------------------------------------------------------------- loading datasets
def test_missing_local_dataset_path_says_it_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_preference_dataset(str(tmp_path / "nope.jsonl"))


def test_a_single_file_has_no_test_split(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    with pytest.raises(ValueError, match="only a 'train' split"):
        load_preference_dataset(str(path), split="test")


def test_a_slice_of_a_single_file_works(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{i}", "chosen": "b", "rejected": "c"}) + "\n" for i in range(4)))
    assert load_preference_dataset(str(path), split="train[2:]")["prompt"] == ["2", "3"]


def test_missing_split_of_a_saved_dataset_dict_names_the_splits(tmp_path):
    DatasetDict({"train": Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])}).save_to_disk(tmp_path)
    with pytest.raises(ValueError, match=r"has splits \['train'\], not 'test'"):
        load_preference_dataset(str(tmp_path), split="test")


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
        args(tmp_path, **{field: value})


def test_face_template_without_placeholders_is_refused():
    with pytest.raises(ValueError, match="face_template"):
        TokenRewardConfig(face_template="{prompt} only")


# ---------------------------------------------------------------------------------------------- doctors and trainer
def test_doctor_with_another_vocabulary_than_the_patient_is_refused(tmp_path):
    with pytest.raises(ValueError, match="share one tokenizer"):
        build_trainer(
            tmp_path, scored_dataset(4), DoctorModel(tiny_causal_lm(vocab_size=300)), patient_model=tiny_causal_lm()
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


# ---------------------------------------------------------------------------------------------- the processor
@pytest.fixture(scope="module")
def patient():
    return tiny_causal_lm(seed=0)


def prompts(tokenizer, texts=("Tell me about cats.", "Hi!")):
    return tokenizer(list(texts), padding=True, return_tensors="pt")


@pytest.mark.parametrize("betas", [math.nan, math.inf, -math.inf, "2", True, None, [1.0, math.nan]])
def test_processor_weights_must_be_finite_real_numbers(betas):
    doctors = [tiny_causal_lm(seed=1), tiny_causal_lm(seed=2)]
    if betas is None:
        with pytest.raises(ValueError, match="alpha must be a finite real number"):
            DoctorLogitsProcessor(doctors, betas=1.0, alpha=math.nan)
        return
    with pytest.raises(ValueError, match="must be a finite real number"):
        DoctorLogitsProcessor(doctors, betas=betas)


def test_processor_wrong_number_of_betas_says_one_or_one_per_doctor():
    with pytest.raises(ValueError, match="one beta, or one per doctor"):
        DoctorLogitsProcessor([tiny_causal_lm(seed=1)], betas=[1.0, 2.0])


def test_processor_set_betas_refuses_nan_and_keeps_the_old_weights():
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0)
    with pytest.raises(ValueError, match="finite"):
        processor.set_betas(float("nan"))
    assert processor.betas == [1.0]


def test_doctor_with_nan_logits_raises_naming_doctor_and_step(patient, tokenizer):
    broken = tiny_causal_lm(seed=1)
    with torch.no_grad():
        broken.lm_head.weight[7] = math.nan
    processor = DoctorLogitsProcessor(broken, betas=1.0, tokenizer=tokenizer)
    inputs = prompts(tokenizer)
    with pytest.raises(ValueError, match=r"NaN or \+inf logits at sequence length"):
        patient.generate(
            **inputs,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )


def test_prompt_ids_outside_the_doctors_vocabulary_raise_at_the_first_call(patient):
    small = tiny_causal_lm(vocab_size=50, seed=1)
    processor = DoctorLogitsProcessor(small, betas=1.0, pad_token_id=2)
    input_ids = torch.tensor([[3, 120, 7]])
    with pytest.raises(ValueError, match="token id 120, outside the vocabulary"):
        patient.generate(
            input_ids,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=2,
        )


def test_a_mask_applies_to_one_generation_only(patient, tokenizer):
    first, second = prompts(tokenizer), prompts(tokenizer, ("Why?", "A longer question here"))
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, attention_mask=first["attention_mask"])
    run = dict(
        logits_processor=LogitsProcessorList([processor]),
        max_new_tokens=2,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    patient.generate(**first, **run)
    with pytest.raises(ValueError, match="earlier `generate` call"):
        patient.generate(**second, **run)
    processor.set_attention_mask(second["attention_mask"])
    patient.generate(**second, **run)  # works once the new mask is given


def test_processor_without_a_mask_serves_many_batches(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    for texts in (("a", "bb"), ("ccc",)):
        out = patient.generate(
            **prompts(tokenizer, texts),
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert out.shape[0] == len(texts)


def test_processor_needs_at_least_one_doctor():
    with pytest.raises(ValueError, match="`doctors` is empty"):
        DoctorLogitsProcessor([])


def test_processor_references_count_must_match():
    with pytest.raises(ValueError, match="2 references for 1 doctors"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=["patient", "patient"])


def test_base_reference_needs_a_lora_doctor():
    with pytest.raises(ValueError, match="no PEFT adapter"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references="base")


def test_doctor_smaller_than_the_tokenizer_is_refused(tokenizer):
    with pytest.raises(ValueError, match="fewer than the"):
        DoctorLogitsProcessor(tiny_causal_lm(vocab_size=100, seed=1), tokenizer=tokenizer)


def test_guided_model_refuses_a_full_weight_doctor_and_nan_weights(patient):
    import copy

    with pytest.raises(ValueError, match="not a LoRA adapter.*DoctorLogitsProcessor"):
        GuidedModel(copy.deepcopy(patient), tiny_causal_lm(seed=1))
    base = copy.deepcopy(patient)
    with pytest.raises(ValueError, match="finite"):
        GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=math.inf)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_train_without_a_dataset_says_it_is_required(tmp_path):
    with pytest.raises(ValueError, match="--dataset is required"):
        main(["train", "--output_dir", str(tmp_path)])


def test_cli_generate_without_a_prompt_says_it_is_required():
    with pytest.raises(ValueError, match="--prompt is required"):
        main(["generate", "--doctor", "x"])


def test_cli_eval_split_of_a_single_file_is_refused(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    with pytest.raises(ValueError, match="only a 'train' split"):
        main(
            [
                "train",
                "--dataset",
                str(path),
                "--eval_split",
                "test",
                "--patient",
                "missing-is-not-reached",
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )


def test_cli_unknown_subcommand_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["fly"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_rewards_on_a_missing_file_says_it_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        main(["rewards", "--dataset", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o")])


def test_no_warning_on_a_clean_dataset(scorer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.score_dataset(Dataset.from_list([{"prompt": "Hi", "chosen": "Hello there!", "rejected": "No."}]))
