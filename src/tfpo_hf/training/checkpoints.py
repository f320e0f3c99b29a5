"""Trainer checkpoints of a doctor: whether a `checkpoint-N` folder is complete, which one to resume from, and
`DoctorCheckpointMixin`, which makes `Trainer` save, load and resume a doctor with the doctor's own files
(`DoctorModel.save_pretrained`, `load_doctor_weights`), the best checkpoint included.

A checkpoint is complete when every file resuming reads is there and readable: `trainer_state.json` (written last
by `Trainer._save_checkpoint`), the LM weights (`model.safetensors` and `config.json`, or the adapter),
`value_head.safetensors`, `doctor_config.json` and, unless the run saves only the model, `optimizer.pt` and
`scheduler.pt`. Readability is checked cheaply: safetensors headers, JSON parsing, torch files being whole zip
archives (their central directory sits at the end, so a truncated file fails).
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..doctor.saving import remove_stale_staging_folders
from ..utils.adapters import has_adapter
from ..utils.constants import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    CONFIG_NAME,
    DOCTOR_CONFIG_NAME,
    OPTIMIZER_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    SCHEDULER_NAME,
    TRAINER_STATE_NAME,
    TRAINING_ARGS_NAME,
    VALUE_HEAD_WEIGHTS_NAME,
    WEIGHTS_NAME,
)


OPTIMIZER_FILES = (OPTIMIZER_NAME, SCHEDULER_NAME)
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # as transformers.trainer_utils.get_last_checkpoint
JSON_FILES = (TRAINER_STATE_NAME, DOCTOR_CONFIG_NAME, CONFIG_NAME, ADAPTER_CONFIG_NAME)


class IncompleteCheckpointError(ValueError):
    """A checkpoint to resume from lacks a file, or one of its files cannot be read."""


class IncompleteCheckpointWarning(UserWarning):
    """`resume_from_checkpoint=True` skipped the newest checkpoint(s) because they are incomplete."""


def checkpoint_problem(folder: str | os.PathLike, adapter: bool, require_optimizer: bool = True) -> str | None:
    """Why `folder` cannot be resumed from (names the missing or unreadable file), or None when it is complete.

    Args:
        folder: a `checkpoint-N` folder.
        adapter: whether the doctor saves a PEFT adapter (`adapter_model.safetensors`) rather than full weights.
        require_optimizer: whether `optimizer.pt` and `scheduler.pt` must be there (False for `save_only_model`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    required = [TRAINER_STATE_NAME, DOCTOR_CONFIG_NAME, VALUE_HEAD_WEIGHTS_NAME, *_weight_files(folder, adapter)]
    if require_optimizer:
        required += OPTIMIZER_FILES
    for name in required:
        if not (folder / name).is_file():
            return f"{name} is missing"
    for path in sorted(folder.iterdir()):
        problem = _file_problem(path)
        if problem:
            return f"{path.name} {problem}"
    return None


def _weight_files(folder: Path, adapter: bool) -> list[str]:
    """The LM weight files the checkpoint must hold (the safetensors name when neither format is there)."""
    if adapter:
        names = [ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME]
        return [ADAPTER_CONFIG_NAME, next((n for n in names if (folder / n).is_file()), names[0])]
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            shards = []  # an unreadable index is reported by `_file_problem`
        return [CONFIG_NAME, index.name, *shards]
    names = [SAFE_WEIGHTS_NAME, WEIGHTS_NAME]
    return [CONFIG_NAME, next((n for n in names if (folder / n).is_file()), names[0])]


def _file_problem(path: Path) -> str | None:
    """What is wrong with one file of a checkpoint, for the formats that can be checked cheaply."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        elif path.name in JSON_FILES or path.name.endswith(".index.json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".pt", ".pth") and not zipfile.is_zipfile(path):
            return "is truncated or not a torch file"
    except (SafetensorError, OSError, ValueError) as error:
        return f"cannot be read ({error})"
    return None


def resolve_resume_checkpoint(
    resume_from_checkpoint: str | os.PathLike | bool | None,
    output_dir: str | os.PathLike,
    adapter: bool,
    require_optimizer: bool = True,
) -> str | None:
    """The checkpoint `Trainer.train` should resume from.

    `True` picks the newest complete `checkpoint-N` in `output_dir`: newer incomplete ones (an interrupted save) are
    skipped with an `IncompleteCheckpointWarning` naming each and why. When there is none, or none is complete, it
    raises (rather than silently training from scratch): delete those folders, or pass `resume_from_checkpoint=None`
    to start over. An explicit path must exist and be complete.

    Raises:
        FileNotFoundError: the explicit path does not exist.
        IncompleteCheckpointError: the explicit path lacks a file or holds an unreadable one (named), or
            `True` finds no complete checkpoint.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        return _last_complete_checkpoint(Path(output_dir), adapter, require_optimizer)
    path = os.path.expanduser(os.fspath(resume_from_checkpoint))
    if not os.path.exists(path):
        raise FileNotFoundError(f"path {path} does not exist: pass the folder of a checkpoint to resume from.")
    problem = checkpoint_problem(path, adapter, require_optimizer)
    if problem:
        raise IncompleteCheckpointError(
            f"Cannot resume from {path}: {problem}; the save of this checkpoint was interrupted or a file was damaged. "
            "Resume from another checkpoint (`resume_from_checkpoint=True` takes the newest complete one)."
        )
    return path


def _last_complete_checkpoint(output_dir: Path, adapter: bool, require_optimizer: bool) -> str:
    found = output_dir.is_dir() and [entry for entry in output_dir.iterdir() if CHECKPOINT_NAME.match(entry.name)]
    if not found:
        raise IncompleteCheckpointError(
            f"No valid checkpoint found in output directory ({output_dir}): there is no `checkpoint-N` folder to "
            "resume from. Train with `resume_from_checkpoint=None` to start from scratch."
        )
    skipped = []
    for folder in sorted(found, key=lambda entry: int(CHECKPOINT_NAME.match(entry.name).group(1)), reverse=True):
        problem = checkpoint_problem(folder, adapter, require_optimizer)
        if problem is None:
            for name, why in skipped:
                warnings.warn(
                    f"Skipping {name} in {output_dir}: it is incomplete ({why}), its save was probably interrupted. "
                    f"Resuming from {folder.name} instead.",
                    IncompleteCheckpointWarning,
                    stacklevel=3,
                )
            return str(folder)
        skipped.append((folder.name, problem))
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise IncompleteCheckpointError(
        f"No complete checkpoint in {output_dir} to resume from ({reasons}). Delete these folders, or train with "
        "`resume_from_checkpoint=None` to start from scratch."
    )


class DoctorCheckpointMixin:
    """Checkpoint hooks of a `Trainer` whose model is a `DoctorModel`."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the doctor with `DoctorModel.save_pretrained` (LM checkpoint + value head + doctor_config.json)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        doctor = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        doctor.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        doctor = self.accelerator.unwrap_model(model if model is not None else self.model, keep_torch_compile=False)
        doctor.load_doctor_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        """Load the best checkpoint with `DoctorModel.load_doctor_weights` (Trainer's own looks for another layout)."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def _save_checkpoint(self, model, trial):
        model_name = Path(self.args.output_dir).name if self.args.hub_model_id is None else self.args.hub_model_id
        self.create_model_card(model_name=model_name.split("/")[-1])
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """Trainer's `train`, resuming only from a complete checkpoint: `True` skips newer incomplete ones with a
        warning and raises when none is complete (never starts from scratch); an incomplete explicit one raises
        (`checkpoints.resolve_resume_checkpoint`). Stale staging folders in `output_dir` are deleted first."""
        if self.args.should_save:
            remove_stale_staging_folders(self.args.output_dir)
        doctor = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        resume_from_checkpoint = resolve_resume_checkpoint(
            resume_from_checkpoint,
            self.args.output_dir,
            adapter=has_adapter(doctor.pretrained_model),
            require_optimizer=not (self.args.save_only_model or self.is_deepspeed_enabled or self.is_fsdp_enabled),
        )
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)
