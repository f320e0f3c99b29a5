"""Bad or hostile input to stage 1 (`TokenRewardScorer`, `TokenRewardConfig`, `load_preference_dataset`): each case
asserts the exception and the key words of its message (the problem and the fix), or the warning, or that the input
works and gives the right result."""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict

from tfpo_hf import TFPOConfig, TokenRewardScorer
from tfpo_hf.rewards.config import TokenRewardConfig
from tfpo_hf.rewards.preference_data import format_completion, load_preference_dataset
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import assistant, user


EOS_TEXT_WARNING = r"1 response\(s\) hold the EOS token's text \('<\|im_end\|>'\)"


@pytest.fixture(scope="module")
def scorer():
    return TokenRewardScorer(tiny_causal_lm(seed=1), tiny_tokenizer(), TokenRewardConfig(batch_size=4))


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
    with pytest.warns(UserWarning, match=EOS_TEXT_WARNING):
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


# ---------------------------------------------------------------------------------------------- configs
def test_face_template_without_placeholders_is_refused():
    with pytest.raises(ValueError, match="face_template"):
        TokenRewardConfig(face_template="{prompt} only")


def test_no_warning_on_a_clean_dataset(scorer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.score_dataset(Dataset.from_list([{"prompt": "Hi", "chosen": "Hello there!", "rejected": "No."}]))


# ---------------------------------------------------------------------------------------------- second pass: data kinds
PAIRS = [
    {"prompt": "Hi", "chosen": "Hello there!", "rejected": "No."},
    {"prompt": "Name a colour", "chosen": "Blue, like the sky.", "rejected": "Dunno."},
]
OTHER_KINDS = {
    "pandas.DataFrame": lambda: pd.DataFrame(PAIRS),
    "filtered DataFrame (index 1, 2)": lambda: pd.DataFrame([PAIRS[0], *PAIRS]).iloc[1:],
    "dict of lists": lambda: {key: [row[key] for row in PAIRS] for key in PAIRS[0]},
    "list of dicts": lambda: list(PAIRS),
}


@pytest.mark.parametrize("kind", list(OTHER_KINDS))
def test_data_of_other_kinds_is_converted_and_scored_alike(scorer, kind):
    scored = scorer.score_dataset(OTHER_KINDS[kind]())
    expected = scorer.score_dataset(Dataset.from_list(PAIRS))
    assert isinstance(scored, Dataset) and scored.column_names == expected.column_names  # no index column
    assert scored["chosen_token_rewards"] == expected["chosen_token_rewards"]


def test_streaming_dataset_is_refused_saying_how_to_materialise_it(scorer):
    streaming = Dataset.from_list(PAIRS).to_iterable_dataset()
    with pytest.raises(
        ValueError, match=r"`dataset` is a streaming .*not supported.*Dataset\.from_generator"
    ) as error:
        scorer.score_dataset(streaming)
    assert "streaming=False" in str(error.value)


def test_dataset_dict_is_refused_naming_its_splits(scorer):
    with pytest.raises(ValueError, match=r"`dataset` is a DatasetDict with splits \['train'\]: pass one split"):
        scorer.score_dataset(DatasetDict({"train": Dataset.from_list(PAIRS)}))


@pytest.mark.parametrize(
    "data, words",
    [
        ("prefs.jsonl", "the string 'prefs.jsonl': load it first"),
        (42, "a int"),
        ({"prompt": "Hi", "chosen": "a", "rejected": "b"}, "column 'prompt' is a str, not a list"),
        ([("Hi", "a", "b")], "a list holding a tuple"),
    ],
)
def test_data_of_another_kind_is_refused_naming_the_argument_and_the_accepted_kinds(scorer, data, words):
    with pytest.raises(
        TypeError, match=r"`dataset` must be a `datasets.Dataset`, a `pandas.DataFrame`, a dict"
    ) as error:
        scorer.score_dataset(data)
    assert words in str(error.value)


def test_dict_columns_of_different_lengths_are_refused(scorer):
    with pytest.raises(ValueError, match=r"different lengths \{'prompt': 2, 'chosen': 2, 'rejected': 1\}"):
        scorer.score_dataset({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e"]})


# ---------------------------------------------------------------------------------------------- second pass: scorer
@pytest.mark.parametrize(
    "patient, words",
    [
        ("HuggingFaceTB/SmolLM2-135M", "got 'HuggingFaceTB/SmolLM2-135M'"),
        (None, "got None"),
        (tiny_tokenizer(), "(the order is patient, tokenizer)"),
    ],
)
def test_scorer_with_a_non_model_names_the_patient_argument(patient, words):
    with pytest.raises(TypeError, match=r"TokenRewardScorer needs `patient`: a causal LM.*from_pretrained") as error:
        TokenRewardScorer(patient, tiny_tokenizer())
    assert words in str(error.value)


def test_scorer_without_a_tokenizer_names_the_tokenizer_argument():
    with pytest.raises(TypeError, match=r"TokenRewardScorer needs `tokenizer`: the patient's tokenizer, got None"):
        TokenRewardScorer(tiny_causal_lm(), None)


def test_scorer_takes_a_tfpo_config_for_its_stage_one_settings(tmp_path):
    args = TFPOConfig(str(tmp_path), theta=0.25, reward_batch_size=3, report_to="none")
    config = TokenRewardScorer(tiny_causal_lm(), tiny_tokenizer(), args).config
    assert isinstance(config, TokenRewardConfig) and (config.theta, config.batch_size) == (0.25, 3)


def test_scorer_with_a_config_of_another_kind_names_the_argument():
    with pytest.raises(TypeError, match="`config` must be a TokenRewardConfig .*got a dict"):
        TokenRewardScorer(tiny_causal_lm(), tiny_tokenizer(), {"theta": 0.3})


@pytest.mark.parametrize("prompt, response", [("Hi", "Yes<|im_end|>ignored tail"), (user("Hi"), "Yes<|im_end|>tail")])
def test_literal_eos_text_in_a_single_response_warns_as_score_dataset_does(scorer, prompt, response):
    with pytest.warns(UserWarning, match=EOS_TEXT_WARNING):
        result = scorer.score(prompt, response)
    assert result.token_ids.count(scorer.tokenizer.eos_token_id) == 1 and result.token_ids[-1] == 2
    assert "tail" not in scorer.tokenizer.decode(result.token_ids)


# ---------------------------------------------------------------------------------------------- second pass: templates
@pytest.mark.parametrize(
    "template, unknown",
    [
        ("{system_prompt}\n\n{language}: {prompt}", "{language}"),
        ("{system_prompt} {} {prompt}", "{}"),
        ("{system_prompt} {0} {prompt}", "{0}"),
        ("{system_prompt} {prompt.upper} {prompt}", "{prompt.upper}"),
    ],
)
def test_face_template_with_an_unknown_placeholder_is_refused_at_construction(template, unknown):
    with pytest.raises(ValueError, match="`face_template`") as error:
        TokenRewardConfig(face_template=template)
    message = str(error.value)
    assert f"placeholder(s) {unknown}, which nothing fills" in message
    assert "the accepted placeholders are {system_prompt} and {prompt}" in message


@pytest.mark.parametrize(
    "template", ["{system_prompt} { {prompt}", "{system_prompt} {prompt} }", "{{prompt}} {system_prompt}"]
)
def test_face_template_with_a_lone_or_escaped_brace_is_refused(template):
    with pytest.raises(ValueError, match="`face_template` must be a string containing both") as error:
        TokenRewardConfig(face_template=template)
    assert "'{{'" in str(error.value)


def test_face_template_literal_braces_are_kept(scorer):
    config = TokenRewardConfig(face_template='{system_prompt}\n{{"json": true}}\n{prompt}')
    texts = format_completion("Hi", "Yes", scorer.tokenizer, config)
    assert texts.positive_prompt == f'{config.positive_system_prompt}\n{{"json": true}}\nHi'


@pytest.mark.parametrize("prompt", ["Hi", user("Hi")], ids=["plain text", "chat"])
def test_braces_in_a_system_prompt_are_kept_literally(scorer, prompt):
    config = TokenRewardConfig(positive_system_prompt="Answer in {language}.", negative_system_prompt="Say {nothing}")
    texts = format_completion(prompt, "Yes", scorer.tokenizer, config)
    assert "Answer in {language}." in texts.positive_prompt and "Say {nothing}" in texts.negative_prompt


# ---------------------------------------------------------------------------------------------- second pass: numbers
@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("tau", torch.tensor(1.5), 1.5),
        ("theta", np.float32(0.25), 0.25),
        ("eps", np.array(1e-3), 1e-3),
        ("batch_size", np.int64(4), 4),
        ("max_length", torch.tensor(64), 64),
    ],
)
def test_numpy_scalars_and_0d_tensors_are_read_as_numbers(name, value, expected):
    got = getattr(TokenRewardConfig(**{name: value}), name)
    assert got == pytest.approx(expected) and type(got) is type(expected)


@pytest.mark.parametrize(
    "name, value", [("tau", "1.0"), ("theta", "0.5"), ("batch_size", "8"), ("eps", "1e-6"), ("tau", torch.ones(2))]
)
def test_a_string_or_an_array_where_a_number_belongs_names_the_field(name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be .*, got {re.escape(repr(value))}"):
        TokenRewardConfig(**{name: value})
