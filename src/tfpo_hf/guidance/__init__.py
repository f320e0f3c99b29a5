"""Stage 3, guidance: `DoctorLogitsProcessor` for any `generate()` call, `GuidedModel` for LoRA doctors that share
the patient's forward, `choose_beta` for a doctor's decoding beta, the loading of doctors and their references, and
the cached incremental forward."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "BetaChoice": ".beta_choice",
    "choose_beta": ".beta_choice",
    "DoctorLogitsProcessor": ".logits_process",
    "GuidedModel": ".guided_model",
}
__all__ = [
    "BetaChoice",
    "DoctorLogitsProcessor",
    "GuidedModel",
    "choose_beta",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .beta_choice import BetaChoice, choose_beta
    from .guided_model import GuidedModel
    from .logits_process import DoctorLogitsProcessor
