"""Bad or hostile input to stage 1 (`TokenRewardScorer`, `TokenRewardConfig`, `load_preference_dataset`): each case
asserts the exception and the key words of its message (the problem and the fix), or the warning, or that the input
works and gives the right result."""

import json
import warnings

import pytest
from datasets import Dataset, DatasetDict

from tfpo_hf import TokenRewardScorer
from tfpo_hf.rewards.config import TokenRewardConfig
from tfpo_hf.rewards.preference_data import load_preference_dataset
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import assistant, user


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


# ---------------------------------------------------------------------------------------------- configs
def test_face_template_without_placeholders_is_refused():
    with pytest.raises(ValueError, match="face_template"):
        TokenRewardConfig(face_template="{prompt} only")


def test_no_warning_on_a_clean_dataset(scorer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.score_dataset(Dataset.from_list([{"prompt": "Hi", "chosen": "Hello there!", "rejected": "No."}]))
