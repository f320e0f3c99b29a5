"""The path and file rules every loader shares (`tfpo_hf.utils.hub`): what can only be a local path, the error for
one that does not exist (never Hub's "Repo id must be in the form ..."), and which checkpoints would be unpickled."""

import os
import re

import pytest

from tfpo_hf.testing import tiny_causal_lm
from tfpo_hf.utils.hub import (
    check_name_or_path,
    looks_like_local_path,
    pickled_weights_file,
    resolve_local_path,
    safe_loading_kwargs,
    weights_names,
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


# ------------------------------------------------------------------------------- pickled weights: subfolder, variant
# Checkpoints laid out as Hub repos are: files by their path in the repo, the `from_pretrained` keyword arguments that
# pick the weights, and the pickled file that must be refused (`None`: the loader reads safetensors weights).
LAYOUTS = {
    "pickled doctor in a subfolder, safetensors patient at the root": (
        ["config.json", "model.safetensors", "doctor/config.json", "doctor/pytorch_model.bin"],
        {"subfolder": "doctor"},
        "doctor/pytorch_model.bin",
    ),
    "pickled adapter in a subfolder": (
        ["model.safetensors", "doctor/adapter_config.json", "doctor/adapter_model.bin"],
        {"subfolder": "doctor"},
        "doctor/adapter_model.bin",
    ),
    "safetensors doctor in a subfolder, old pickles at the root": (
        ["pytorch_model.bin", "doctor/config.json", "doctor/model.safetensors"],
        {"subfolder": "doctor"},
        None,
    ),
    "a nested subfolder": (
        ["model.safetensors", "runs/best/pytorch_model.bin"],
        {"subfolder": "runs/best"},
        "runs/best/pytorch_model.bin",
    ),
    "pickled variant beside default safetensors": (
        ["model.safetensors", "pytorch_model.fp16.bin"],
        {"variant": "fp16"},
        "pytorch_model.fp16.bin",
    ),
    "sharded pickled variant beside default safetensors": (
        ["model.safetensors", "pytorch_model.bin.index.fp16.json", "pytorch_model-00001-of-00002.fp16.bin"],
        {"variant": "fp16"},
        "pytorch_model.bin.index.fp16.json",
    ),
    "safetensors variant beside default pickles": (
        ["pytorch_model.bin", "model.fp16.safetensors"],
        {"variant": "fp16"},
        None,
    ),
    "sharded safetensors variant beside default pickles": (
        ["pytorch_model.bin", "model.safetensors.index.fp16.json", "model.fp16-00001-of-00002.safetensors"],
        {"variant": "fp16"},
        None,
    ),
    "only a variant is safetensors, none asked for": (
        ["pytorch_model.bin", "model.fp16.safetensors"],
        {},
        "pytorch_model.bin",
    ),
    "pickled variant in a subfolder": (
        ["model.safetensors", "doctor/model.safetensors", "doctor/pytorch_model.bf16.bin"],
        {"subfolder": "doctor", "variant": "bf16"},
        "doctor/pytorch_model.bf16.bin",
    ),
}


def lay_out(root, files: list[str]) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not opened")


@pytest.mark.parametrize("files, kwargs, pickled", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_subfolder_and_variant_pick_the_weights_checked_in_a_folder_and_on_the_hub(
    files, kwargs, pickled, tmp_path, monkeypatch
):
    # one layout, one verdict: as a local folder (no Hub call) and as a Hub repo (only asked which files it holds)
    forbid_hub_calls(monkeypatch)
    lay_out(tmp_path, files)
    fake_hub_repo(monkeypatch, set(files))
    if pickled is None:
        for name in (str(tmp_path), "owner/doctors"):
            assert safe_loading_kwargs(name, kwargs) == {**kwargs, "use_safetensors": True}
        return
    for refused in (str(tmp_path / pickled), f"owner/doctors/{pickled}"):
        name = str(tmp_path) if refused.startswith(str(tmp_path)) else "owner/doctors"
        with pytest.raises(ValueError, match=rf"{re.escape(refused)} holds pickled weights.*use_safetensors=False"):
            safe_loading_kwargs(name, kwargs)
        assert safe_loading_kwargs(name, {**kwargs, "use_safetensors": False})["use_safetensors"] is False


def test_the_refusal_names_the_safetensors_files_of_the_variant(tmp_path):
    lay_out(tmp_path, ["model.safetensors", "pytorch_model.fp16.bin"])
    with pytest.raises(
        ValueError, match=r"no safetensors weights for variant='fp16' \(model\.fp16\.safetensors, .*\)"
    ):
        safe_loading_kwargs(str(tmp_path), {"variant": "fp16"})


def test_a_missing_subfolder_is_left_to_the_loader(tmp_path):
    lay_out(tmp_path, ["pytorch_model.bin"])
    assert pickled_weights_file(str(tmp_path), {"subfolder": "missing"}) is None


@pytest.mark.parametrize("max_shard_size", [None, "20KB"])
def test_the_checked_names_are_those_transformers_saves_a_variant_under(max_shard_size, tmp_path):
    # transformers' own naming (`_add_variant`), single file or shards with their index, is what is looked for
    model = tiny_causal_lm(seed=1)
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(tmp_path, variant="fp16", **kwargs)
    saved = {path.name for path in tmp_path.iterdir()}
    safe_names, _ = weights_names("fp16")
    assert saved & set(safe_names) == {safe_names[0] if max_shard_size is None else safe_names[2]}
    assert pickled_weights_file(str(tmp_path), {"variant": "fp16"}) is None
