"""Finding one file of a checkpoint, in a local folder or a Hub repo, and telling a local path from a Hub id."""

from __future__ import annotations

import os
from typing import Any

from transformers.utils import cached_file


HUB_KWARGS = ("cache_dir", "revision", "token")  # the `from_pretrained` keyword arguments that locate a file
LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def hub_kwargs_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments among `kwargs` that locate a checkpoint's files (revision, token, cache dir)."""
    return {key: value for key, value in kwargs.items() if key in HUB_KWARGS}


def looks_like_local_path(name: str) -> bool:
    """Whether `name` can only be a local path: it exists on disk, is absolute, starts with `./`, `../` or `~`, or
    is not a valid Hub repo id (`name` or `owner/name`, so `a/b/c`, spaces, `..` are paths)."""
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
