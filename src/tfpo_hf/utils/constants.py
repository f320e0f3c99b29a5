"""Every file name a doctor, its checkpoints and its tokenizer are saved under: transformers' own names where it
defines them, ours beside them."""

from transformers.utils import (  # noqa: F401  (re-exported: one place for every file name)
    ADAPTER_CONFIG_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)


# Weights that load without unpickling, and the pickled ones a loader refuses unless the caller opts in.
SAFE_WEIGHTS_NAMES = (SAFE_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)
PICKLED_WEIGHTS_NAMES = (WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

# A doctor's own files, beside its LM checkpoint.
VALUE_HEAD_WEIGHTS_NAME = "value_head.safetensors"
DOCTOR_CONFIG_NAME = "doctor_config.json"  # `DoctorConfig`
LEGACY_DOCTOR_CONFIG_NAME = "tfpo_config.json"  # what doctors saved before 0.1.0 call it: still read

# `Trainer`'s checkpoint files, as transformers.trainer names them (importing it would pull in the whole Trainer).
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
TRAINING_ARGS_NAME = "training_args.bin"

# A tokenizer saved beside a doctor: any one of these means there is one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
