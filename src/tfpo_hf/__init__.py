"""tfpo_hf: test-time alignment for transformers. A small doctor, trained with token-level flow-guided preference
optimization (TFPO, LLMdoctor), steers a frozen patient model inside `generate()`."""

from .collator import TokenRewardCollator
from .config import TFPOConfig, TokenRewardConfig
from .defaults import load_default_patient
from .fused import GuidedModel
from .logits_process import DoctorLogitsProcessor
from .modeling import DoctorModel
from .rewards import TokenRewards, TokenRewardScorer
from .trainer import TFPOTrainer

__version__ = "0.1.0"

__all__ = [
    "DoctorLogitsProcessor",
    "DoctorModel",
    "GuidedModel",
    "TFPOConfig",
    "TFPOTrainer",
    "TokenRewardCollator",
    "TokenRewardConfig",
    "TokenRewardScorer",
    "TokenRewards",
    "load_default_patient",
]
