"""Bad or hostile input to the `tfpo-hf` CLI: missing arguments, splits a file does not have, unknown subcommands and
missing files; each case asserts the exception and the key words of its message (the problem and the fix), or the
warning, or that the input works and gives the right result."""

import json

import pytest

from tfpo_hf.cli import main


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


EMPTY_DATA_FILES = {
    "empty.jsonl": "",
    "blank.jsonl": "\n  \n",
    "empty.csv": "",
    "header_only.csv": "prompt,chosen,rejected\n",
    "empty_list.json": "[]",
}


@pytest.mark.parametrize("subcommand", ["rewards", "train"])
@pytest.mark.parametrize("name", list(EMPTY_DATA_FILES))
def test_cli_on_a_data_file_without_rows_names_the_file(tmp_path, subcommand, name):
    path = tmp_path / name
    path.write_text(EMPTY_DATA_FILES[name])
    output = ["--output", str(tmp_path / "o")] if subcommand == "rewards" else ["--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match=f"Dataset file '.*{name}' has no rows: give it at least one preference pair"):
        main([subcommand, "--dataset", str(path), "--patient", "missing-is-not-reached", *output])
