"""Finding one file of a checkpoint, in a local folder or a Hub repo, telling a local path from a Hub id, and
refusing checkpoints whose weights would be unpickled."""

from __future__ import annotations

import os
from typing import Any

from transformers.utils import cached_file, has_file

from .constants import (
    OPTIMIZER_NAME,
    PICKLE_SUFFIXES,
    PICKLED_WEIGHTS_NAMES,
    SAFE_WEIGHTS_NAMES,
    SCHEDULER_NAME,
    TRAINING_ARGS_NAME,
    VALUE_HEAD_WEIGHTS_NAME,
)


HUB_KWARGS = ("cache_dir", "revision", "token")  # the `from_pretrained` keyword arguments that locate a file
LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
# pickles a `Trainer` checkpoint holds beside its weights: never loaded as weights, so no reason to refuse a folder
TRAINER_PICKLES = (OPTIMIZER_NAME, SCHEDULER_NAME, TRAINING_ARGS_NAME, "scaler.pt")


def hub_kwargs_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments among `kwargs` that locate a checkpoint's files (revision, token, cache dir)."""
    return {key: value for key, value in kwargs.items() if key in HUB_KWARGS}


def check_name_or_path(argument: str, value: Any) -> None:
    """Refuse a `value` of `argument` that is neither a local path nor a Hub id (`None`, a number, a model...)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(
            f"`{argument}` must be a local path or a Hub repo id (a non-empty `str` or `os.PathLike`), got "
            f"{value!r}. Pass the folder a doctor was saved to, or its 'owner/name' on the Hub."
        )


def looks_like_local_path(name: str) -> bool:
    """Whether `name` can only be a local path: it exists on disk, is absolute, starts with `./`, `../` or `~`, or
    is not a valid Hub repo id (`name` or `owner/name`), which covers `a/b/c`, a Windows drive (`C:\\x`), a
    backslash, spaces and `..`. Every loader of this package asks this before any Hub call."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.exists(os.path.expanduser(name)) or name.startswith(LOCAL_PREFIXES) or os.path.isabs(name):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def resolve_local_path(name_or_path: str | os.PathLike) -> str:
    """`name_or_path` with `~` expanded when it is a local path; a Hub id is returned as it is.

    Raises:
        FileNotFoundError: when it can only be a local path (see `looks_like_local_path`) and does not exist, so
            the error names the path instead of Hub's "Repo id must be in the form ...".
    """
    name = str(name_or_path)
    if not looks_like_local_path(name):
        return name
    path = os.path.expanduser(name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"path {path} does not exist: check the folder name (a Hub repo id has the form 'owner/name')."
        )
    return path


def find_file(name_or_path: str, filename: str, hub_kwargs: dict[str, Any]) -> str | None:
    """Path of `filename` in a local folder or a Hub repo, or None when it is not there.

    Raises:
        FileNotFoundError: when `name_or_path` is a local path that does not exist.
    """
    name_or_path = resolve_local_path(name_or_path)
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    return cached_file(
        name_or_path,
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )


def pickled_weights_file(name_or_path: str, hub_kwargs: dict[str, Any]) -> str | None:
    """The pickled weights file (`pytorch_model.bin`, `adapter_model.bin`, a `*.pt`...) that loading the checkpoint
    at `name_or_path` (a local folder, or a Hub id checked without downloading) would unpickle, or `None` when it
    holds safetensors weights or no pickled ones."""
    if os.path.isdir(name_or_path):
        names = sorted(os.listdir(name_or_path))
        if any(_is_safe_weights(name) for name in names):
            return None
        pickled = (name for name in names if name.endswith(PICKLE_SUFFIXES) and not _is_trainer_pickle(name))
        return next((os.path.join(name_or_path, name) for name in pickled), None)
    if any(has_file(name_or_path, name, **hub_kwargs) for name in SAFE_WEIGHTS_NAMES):
        return None
    return next(
        (f"{name_or_path}/{name}" for name in PICKLED_WEIGHTS_NAMES if has_file(name_or_path, name, **hub_kwargs)),
        None,
    )


def safe_loading_kwargs(name_or_path: str, from_pretrained_kwargs: dict[str, Any]) -> dict[str, Any]:
    """`from_pretrained_kwargs` with `use_safetensors=True` (transformers then never falls back to `torch.load`),
    unless the caller opted in to pickled weights with `use_safetensors=False`.

    Raises:
        ValueError: naming the file, when the checkpoint holds pickled weights only (PEFT loads an `adapter_model.bin`
            with `torch.load` whatever `use_safetensors` says, so the check is made here, before any loader).
    """
    if from_pretrained_kwargs.get("use_safetensors") is False:
        return dict(from_pretrained_kwargs)
    pickled = pickled_weights_file(name_or_path, hub_kwargs_of(from_pretrained_kwargs))
    if pickled:
        raise ValueError(
            f"{pickled} holds pickled weights and {name_or_path} has no safetensors weights: loading them would run "
            "`torch.load`, which can execute code hidden in the file. Convert the checkpoint to safetensors where you "
            "trust it (`AutoModelForCausalLM.from_pretrained(path, use_safetensors=False).save_pretrained(path)`), "
            "or, if you trust its source, opt in with `use_safetensors=False`."
        )
    return {**from_pretrained_kwargs, "use_safetensors": True}


def _is_safe_weights(filename: str) -> bool:
    """A safetensors weights file or index of an LM checkpoint (the value head's file is not one)."""
    return filename.endswith((".safetensors", ".safetensors.index.json")) and filename != VALUE_HEAD_WEIGHTS_NAME


def _is_trainer_pickle(filename: str) -> bool:
    return filename in TRAINER_PICKLES or filename.startswith("rng_state")
