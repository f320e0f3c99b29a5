"""Finding one file of a checkpoint, in a local folder or a Hub repo."""

from __future__ import annotations

import os
from typing import Any

from transformers.utils import cached_file


HUB_KWARGS = ("cache_dir", "revision", "token")  # the `from_pretrained` keyword arguments that locate a file


def hub_kwargs_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments among `kwargs` that locate a checkpoint's files (revision, token, cache dir)."""
    return {key: value for key, value in kwargs.items() if key in HUB_KWARGS}


def find_file(name_or_path: str, filename: str, hub_kwargs: dict[str, Any]) -> str | None:
    """Path of `filename` in a local folder or a Hub repo, or None when it is not there."""
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
