"""Stage 3, guidance: `DoctorLogitsProcessor` for any `generate()` call, `GuidedModel` for LoRA doctors that share
the patient's forward, the loading of doctors and their references, and the cached incremental forward."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "DoctorLogitsProcessor": ".logits_process",
    "GuidedModel": ".guided_model",
}
__all__ = [
    "DoctorLogitsProcessor",
    "GuidedModel",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .guided_model import GuidedModel
    from .logits_process import DoctorLogitsProcessor
