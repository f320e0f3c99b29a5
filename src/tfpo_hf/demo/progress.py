"""`RunProgress`: what a demo run has finished, kept under `<output_dir>/progress/` as soon as each step ends, so that
a run stopped part way (a long weak-to-strong run on a CPU) resumes where it stopped when started again with the
same settings. Every file is written atomically (a temporary name, then a rename)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk

from ..utils.files import staged_folder, write_json_atomically


SETTINGS_FILE = "settings.json"
# Where and whether to resume, the frontier's extra betas and a doctor of another family (they add methods, they
# change none already run).
IGNORED_SETTINGS = ("output_dir", "resume", "frontier_betas", "frontier_dpo_betas", "cross_family_doctor")


class RunProgress:
    """The finished steps of one run, in `folder`.

    Args:
        folder: where the steps are kept (`<output_dir>/progress`).
        settings: the run's arguments; a resumed run must have the same ones (except `IGNORED_SETTINGS`).
        resume: reuse what `folder` holds; `False` deletes it first.

    Raises:
        ValueError: `folder` holds the steps of a run with other settings.
    """

    def __init__(self, folder: str | os.PathLike, settings: dict[str, Any], resume: bool = True):
        self.folder = Path(folder)
        settings = {key: value for key, value in settings.items() if key not in IGNORED_SETTINGS}
        settings_path = self.folder / SETTINGS_FILE
        if not resume and self.folder.exists():
            shutil.rmtree(self.folder)
        if settings_path.is_file():
            recorded = json.loads(settings_path.read_text())
            changed = sorted(
                key for key in settings.keys() | recorded.keys() if settings.get(key) != recorded.get(key)
            )
            if changed:
                raise ValueError(
                    f"{self.folder.parent} holds part of a run with other settings ({', '.join(changed)} differ): "
                    "give another --output_dir, the same settings, or --resume false to start over there."
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(settings_path, settings)

    @property
    def generations_dir(self) -> Path:
        """Where `evaluate_methods` keeps each method's texts."""
        return self.folder / "generations"

    def json(self, name: str, compute: Callable[[], Any]) -> Any:
        """The JSON value of step `name`: read back if finished, else computed and kept."""
        path = self.folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        write_json(path, value)
        return value

    def dataset(self, name: str, compute: Callable[[], tuple[Dataset, dict]]) -> tuple[Dataset, dict]:
        """`(dataset, statistics)` of step `name`: read back if finished, else computed and kept."""
        folder, stats_path = self.folder / name, self.folder / f"{name}.stats.json"
        if stats_path.is_file() and folder.is_dir():
            return load_from_disk(str(folder)), json.loads(stats_path.read_text())
        dataset, stats = compute()
        with staged_folder(folder) as staging:
            dataset.save_to_disk(str(staging))
        write_json(stats_path, stats)
        return load_from_disk(str(folder)), stats

    def record(self, name: str, value: Any) -> None:
        """Keep `value` under `name` (read back with `recorded`)."""
        write_json(self.folder / f"{name}.json", value)

    def recorded(self, name: str, default: Any = None) -> Any:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else default


def write_json(path: Path, value: Any) -> None:
    """Write `value` as indented JSON at `path`, atomically."""
    write_json_atomically(path, value, indent=2)
