"""tfpo_hf: test-time alignment for transformers. A small doctor, trained with token-level flow-guided preference
optimization (TFPO, LLMdoctor), steers a frozen patient model inside `generate()`.

The public names below are imported lazily (PEP 562): `import tfpo_hf` is cheap, and `tfpo_hf.DoctorLogitsProcessor`
imports only what decoding needs, not the training stack (trl, datasets) nor the demo's extras.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any


try:
    __version__ = version("tfpo-hf")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> the submodule that defines it
_LAZY_IMPORTS = {
    "DoctorLogitsProcessor": ".logits_process",
    "DoctorModel": ".modeling",
    "GuidedModel": ".fused",
    "TFPOConfig": ".config",
    "TFPOTrainer": ".trainer",
    "TokenRewardCollator": ".collator",
    "TokenRewardConfig": ".token_reward_config",
    "TokenRewardScorer": ".rewards",
    "TokenRewards": ".rewards",
    "load_default_patient": ".embedded_patient",
}

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

if TYPE_CHECKING:
    from .collator import TokenRewardCollator
    from .config import TFPOConfig
    from .embedded_patient import load_default_patient
    from .fused import GuidedModel
    from .logits_process import DoctorLogitsProcessor
    from .modeling import DoctorModel
    from .rewards import TokenRewards, TokenRewardScorer
    from .token_reward_config import TokenRewardConfig
    from .trainer import TFPOTrainer


def __getattr__(name: str) -> Any:
    module_name = _LAZY_IMPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
