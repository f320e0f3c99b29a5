"""Writing files and folders so that an interrupted write never leaves a half-written one behind: stage beside the
target, then replace it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_json_atomically(path: str | os.PathLike, value: Any, **dumps_kwargs) -> None:
    """Write `value` as JSON at `path` (a `.tmp` file beside it, then `os.replace`)."""
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(value, **dumps_kwargs))
    os.replace(staging, path)


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder `<target>.tmp` to write into; when the block ends without an error it takes `target`'s place
    (an earlier `target` is removed first), else it is left for the next attempt to clear."""
    target = Path(target)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
