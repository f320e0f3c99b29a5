"""The one `TFPOConfig` factory of the tests (`make_args`) and a tiny `TFPOTrainer` built on it."""

from __future__ import annotations

import os

from tfpo_hf import DoctorModel, TFPOConfig, TFPOTrainer
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer


def make_args(output_dir: str | os.PathLike, **overrides) -> TFPOConfig:
    """A short, seeded, quiet CPU `TFPOConfig` writing to `output_dir` (2 steps of 4 pairs, a log line every step, no
    checkpoints), with `overrides` on top."""
    defaults = dict(
        output_dir=str(output_dir),
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    return TFPOConfig(**{**defaults, **overrides})


def tiny_trainer(args: TFPOConfig, train_dataset, doctor=None, **kwargs) -> TFPOTrainer:
    """A `TFPOTrainer` of `doctor` (by default a tiny full-weight doctor, seed 0) on the tiny tokenizer; building it
    runs every dataset check. `kwargs` go to `TFPOTrainer` (`patient_model`, `peft_config`, `eval_dataset`, ...)."""
    doctor = DoctorModel(tiny_causal_lm()) if doctor is None else doctor
    return TFPOTrainer(doctor, args=args, train_dataset=train_dataset, processing_class=tiny_tokenizer(), **kwargs)
