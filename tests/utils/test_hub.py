"""The path and file rules every loader shares (`tfpo_hf.utils.hub`): what can only be a local path, the error for
one that does not exist (never Hub's "Repo id must be in the form ..."), and which checkpoints would be unpickled."""

import os
import re

import pytest

from tfpo_hf.utils.hub import (
    check_name_or_path,
    looks_like_local_path,
    pickled_weights_file,
    resolve_local_path,
    safe_loading_kwargs,
)

from ..helpers.hub import fake_hub_repo, forbid_hub_calls


MISSING_PATHS = ["./missing-doctor", "../missing-doctor", "~/missing", "/abs/missing", "missing/sub/dir"]
WINDOWS_PATHS = ["C:\\missing-doctor", "C:/missing-doctor", "..\\missing-doctor", "missing\\doctor"]


@pytest.mark.parametrize("name", MISSING_PATHS + WINDOWS_PATHS)
def test_paths_are_told_from_hub_ids_without_a_hub_call(name, monkeypatch):
    forbid_hub_calls(monkeypatch)
    assert looks_like_local_path(name)


@pytest.mark.parametrize("name", ["gpt2", "owner/name", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_hub_ids_that_are_not_folders_are_hub_ids(name):
    assert not looks_like_local_path(name)


def test_an_existing_folder_named_like_a_hub_id_is_a_path(tmp_path, monkeypatch):
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert looks_like_local_path("owner/name")


@pytest.mark.parametrize("name", MISSING_PATHS + WINDOWS_PATHS)
def test_a_missing_local_path_says_it_does_not_exist(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    forbid_hub_calls(monkeypatch)
    with pytest.raises(FileNotFoundError, match=rf"path {re.escape(os.path.expanduser(name))} does not exist"):
        resolve_local_path(name)


def test_tilde_is_expanded_for_the_loaders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "doctor").mkdir()
    assert resolve_local_path("~/doctor") == str(tmp_path / "doctor")


@pytest.mark.parametrize("value", [None, 3, "", ["a"]])
def test_a_name_or_path_must_be_a_string_or_a_path(value):
    with pytest.raises(ValueError, match=r"`name_or_path` must be a local path or a Hub repo id .*got"):
        check_name_or_path("name_or_path", value)


# ---------------------------------------------------------------------------------------------- pickled weights
@pytest.mark.parametrize("pickled", ["pytorch_model.bin", "adapter_model.bin", "model.pt", "weights.pth"])
def test_a_folder_with_pickled_weights_only_is_refused_naming_the_file_and_the_fixes(pickled, tmp_path):
    (tmp_path / pickled).write_bytes(b"not opened")
    (tmp_path / "value_head.safetensors").write_bytes(b"")  # the value head's file is not LM weights
    with pytest.raises(ValueError, match=rf"{re.escape(pickled)} holds pickled weights.*safetensors.*use_safetensors"):
        safe_loading_kwargs(str(tmp_path), {})


def test_opting_in_with_use_safetensors_false_accepts_pickled_weights(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert safe_loading_kwargs(str(tmp_path), {"use_safetensors": False, "revision": "x"}) == {
        "use_safetensors": False,
        "revision": "x",
    }


@pytest.mark.parametrize(
    "files",
    [
        ["model.safetensors", "pytorch_model.bin"],  # both: transformers is told to read the safetensors
        ["model.safetensors", "optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state.pth"],  # a checkpoint
        ["optimizer.pt", "training_args.bin"],  # no weights at all: the loader says so itself
    ],
)
def test_safetensors_weights_and_trainer_pickles_are_not_refused(files, tmp_path):
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert pickled_weights_file(str(tmp_path), {}) is None
    assert safe_loading_kwargs(str(tmp_path), {})["use_safetensors"] is True


def test_a_hub_repo_with_pickled_weights_only_is_refused_without_downloading(monkeypatch):
    fake_hub_repo(monkeypatch, {"config.json", "pytorch_model.bin"})
    with pytest.raises(ValueError, match="owner/old-doctor/pytorch_model.bin holds pickled weights"):
        safe_loading_kwargs("owner/old-doctor", {})
    fake_hub_repo(monkeypatch, {"config.json", "pytorch_model.bin", "model.safetensors"})
    assert safe_loading_kwargs("owner/old-doctor", {}) == {"use_safetensors": True}
