"""The doctor: a causal LM plus a value head (`DoctorModel`), the settings it saves beside its weights
(`DoctorConfig`), atomic saving, and the model card."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "DoctorModel": ".modeling",
    "ValueHead": ".modeling",
    "truncated_causal_lm": ".modeling",
    "DoctorConfig": ".config",
}
__all__ = [
    "DoctorConfig",
    "DoctorModel",
    "ValueHead",
    "truncated_causal_lm",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .config import DoctorConfig
    from .modeling import DoctorModel, ValueHead, truncated_causal_lm
