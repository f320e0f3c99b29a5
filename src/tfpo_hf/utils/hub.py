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
)


# the `from_pretrained` keyword arguments that locate a file (`subfolder`: where in the folder or repo it is)
HUB_KWARGS = ("cache_dir", "revision", "subfolder", "token")
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
        path = os.path.join(name_or_path, hub_kwargs.get("subfolder") or "", filename)
        return path if os.path.isfile(path) else None
    return cached_file(
        name_or_path,
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )


def weights_names(variant: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The safetensors and the pickled weights files (single or index of shards, LM or LoRA adapter) a loader reads
    for `variant`, named as transformers names them (`model.<variant>.safetensors`, `pytorch_model.<variant>.bin`,
    `model.safetensors.index.<variant>.json`...); PEFT has no variants, so the adapter's names never change."""
    from transformers.modeling_utils import _add_variant  # imported here: the processor imports fast

    lm_safe, adapter_safe, index_safe = SAFE_WEIGHTS_NAMES
    lm_pickled, adapter_pickled, index_pickled = PICKLED_WEIGHTS_NAMES
    return (
        (_add_variant(lm_safe, variant), adapter_safe, _add_variant(index_safe, variant)),
        (_add_variant(lm_pickled, variant), adapter_pickled, _add_variant(index_pickled, variant)),
    )


def pickled_weights_file(name_or_path: str, from_pretrained_kwargs: dict[str, Any]) -> str | None:
    """The pickled weights file (`pytorch_model.bin`, `adapter_model.bin`, a `*.pt`...) that loading the checkpoint
    at `name_or_path` (a local folder, or a Hub id checked without downloading) would unpickle, or `None` when it
    holds the safetensors weights the loader reads, or no pickled ones. Of `from_pretrained_kwargs`, `subfolder`
    says where the weights are and `variant` which of them are read (see `weights_names`); in a local folder any
    other pickle (`*.pt`, `*.pth`, `*.ckpt`) but a `Trainer`'s own counts too."""
    subfolder, variant = from_pretrained_kwargs.get("subfolder") or "", from_pretrained_kwargs.get("variant")
    safe_names, pickled_names = weights_names(variant)
    if os.path.isdir(name_or_path):
        return _local_pickled_weights(os.path.join(name_or_path, subfolder), safe_names, pickled_names)
    hub_kwargs = {key: value for key, value in hub_kwargs_of(from_pretrained_kwargs).items() if key != "subfolder"}
    in_repo = [f"{subfolder.strip('/')}/{name}" if subfolder else name for name in (*safe_names, *pickled_names)]
    if any(has_file(name_or_path, name, **hub_kwargs) for name in in_repo[: len(safe_names)]):
        return None
    pickled = (name for name in in_repo[len(safe_names) :] if has_file(name_or_path, name, **hub_kwargs))
    return next((f"{name_or_path}/{name}" for name in pickled), None)


def safe_loading_kwargs(name_or_path: str, from_pretrained_kwargs: dict[str, Any]) -> dict[str, Any]:
    """`from_pretrained_kwargs` with `use_safetensors=True` (transformers then never falls back to `torch.load`),
    unless the caller opted in to pickled weights with `use_safetensors=False`. `subfolder` and `variant` among them
    are honoured: the weights checked are those the loader would read.

    Raises:
        ValueError: naming the file, when the checkpoint holds pickled weights only (PEFT loads an `adapter_model.bin`
            with `torch.load` whatever `use_safetensors` says, so the check is made here, before any loader).
    """
    if from_pretrained_kwargs.get("use_safetensors") is False:
        return dict(from_pretrained_kwargs)
    pickled = pickled_weights_file(name_or_path, from_pretrained_kwargs)
    if pickled:
        variant = from_pretrained_kwargs.get("variant")
        *names, last = weights_names(variant)[0]
        expected = (f" for variant={variant!r}" if variant else "") + f" ({', '.join(names)} or {last})"
        raise ValueError(
            f"{pickled} holds pickled weights and {os.path.dirname(pickled)} has no safetensors weights{expected}: "
            "loading them would run `torch.load`, which can execute code hidden in the file. Convert the checkpoint "
            "to safetensors where you trust it (`AutoModelForCausalLM.from_pretrained(path, use_safetensors=False)"
            ".save_pretrained(path)`), or, if you trust its source, opt in with `use_safetensors=False`."
        )
    return {**from_pretrained_kwargs, "use_safetensors": True}


def _local_pickled_weights(folder: str, safe_names: tuple[str, ...], pickled_names: tuple[str, ...]) -> str | None:
    """`pickled_weights_file` for a local `folder` (one that does not exist is left to the loader to name)."""
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if any(name in safe_names for name in names):
        return None
    pickled = [name for name in names if _is_pickled_weights(name) or name in pickled_names]
    pickled.sort(key=lambda name: name not in pickled_names)  # the files the loader would read first
    return os.path.join(folder, pickled[0]) if pickled else None


def _is_pickled_weights(filename: str) -> bool:
    """A pickle (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`) other than those a `Trainer` checkpoint holds beside its weights."""
    return (
        filename.endswith(PICKLE_SUFFIXES) and filename not in TRAINER_PICKLES and not filename.startswith("rng_state")
    )
