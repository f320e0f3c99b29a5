"""tfpo_hf: test-time alignment for transformers. A small doctor, trained with token-level flow-guided preference
optimization (TFPO, LLMdoctor), steers a frozen patient model inside `generate()`.

One subpackage per stage: `rewards` (stage 1, token rewards), `doctor` (the doctor model and its saved settings),
`training` (stage 2, TFPO), `guidance` (stage 3, decoding); `utils` holds what they share. The public names below
are imported lazily (PEP 562): `import tfpo_hf` is cheap, and `tfpo_hf.DoctorLogitsProcessor` imports only what
decoding needs, not the training stack (trl, datasets) nor the demo's extras.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .utils.lazy_exports import lazy_exports


try:
    __version__ = version("tfpo-hf")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "TokenRewardConfig": ".rewards.config",
    "TokenRewardScorer": ".rewards.scorer",
    "TokenRewards": ".rewards.scorer",
    "DoctorConfig": ".doctor.config",
    "DoctorModel": ".doctor.modeling",
    "TFPOConfig": ".training.config",
    "TFPOTrainer": ".training.trainer",
    "TokenRewardCollator": ".training.collator",
    "DoctorLogitsProcessor": ".guidance.logits_process",
    "GuidedModel": ".guidance.guided_model",
    "BetaChoice": ".guidance.beta_choice",
    "choose_beta": ".guidance.beta_choice",
    "load_default_patient": ".utils.embedded_patient",
}
__all__ = [
    "BetaChoice",
    "DoctorConfig",
    "DoctorLogitsProcessor",
    "DoctorModel",
    "GuidedModel",
    "TFPOConfig",
    "TFPOTrainer",
    "TokenRewardCollator",
    "TokenRewardConfig",
    "TokenRewardScorer",
    "TokenRewards",
    "choose_beta",
    "load_default_patient",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .doctor.config import DoctorConfig
    from .doctor.modeling import DoctorModel
    from .guidance.beta_choice import BetaChoice, choose_beta
    from .guidance.guided_model import GuidedModel
    from .guidance.logits_process import DoctorLogitsProcessor
    from .rewards.config import TokenRewardConfig
    from .rewards.scorer import TokenRewards, TokenRewardScorer
    from .training.collator import TokenRewardCollator
    from .training.config import TFPOConfig
    from .training.trainer import TFPOTrainer
    from .utils.embedded_patient import load_default_patient
