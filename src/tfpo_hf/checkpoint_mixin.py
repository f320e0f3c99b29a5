"""Saving, loading and resuming a doctor inside `Trainer` (mixed into `TFPOTrainer`): the doctor's own files
(`DoctorModel.save_pretrained`, `load_doctor_weights`), the best checkpoint loaded the same way, and resuming only
from a complete checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .adapters import has_adapter
from .checkpoints import resolve_resume_checkpoint
from .saving import remove_stale_staging_folders


class DoctorCheckpointMixin:
    """Checkpoint hooks of a `Trainer` whose model is a `DoctorModel`."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the doctor with `DoctorModel.save_pretrained` (LM checkpoint + value head + tfpo_config.json)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        doctor = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        doctor.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

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
