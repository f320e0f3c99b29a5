"""A doctor of another tokenizer than the patient's: the bytes each token spells (`TokenBytes`), a model's
probability of the next text marginalised over its tokenizations (`TextPrefixModel`, fed by `PromptedPaths`) or read
along one path (`AlignedTextModel`), the rows of a `generate` call read by a doctor (`TextDoctor`, which
`DoctorLogitsProcessor` runs), and stage-1 rewards moved from the patient's tokens onto the doctor's
(`transfer_token_rewards`, `retokenize_for_doctor`, which `TFPOTrainer` runs when given `patient_processing_class`)."""

from typing import TYPE_CHECKING

from ..utils.lazy_exports import lazy_exports


# public name -> the module that defines it
_EXPORTS = {
    "AlignedTextModel": ".aligned_text",
    "Hypothesis": ".text_probability",
    "PromptedPaths": ".prompted_paths",
    "TextDoctor": ".text_guidance",
    "TextPrefixModel": ".text_probability",
    "TokenBytes": ".token_bytes",
    "retokenize_for_doctor": ".reward_transfer",
    "transfer_token_rewards": ".reward_transfer",
}
__all__ = [
    "AlignedTextModel",
    "Hypothesis",
    "PromptedPaths",
    "TextDoctor",
    "TextPrefixModel",
    "TokenBytes",
    "retokenize_for_doctor",
    "transfer_token_rewards",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .aligned_text import AlignedTextModel
    from .prompted_paths import PromptedPaths
    from .reward_transfer import retokenize_for_doctor, transfer_token_rewards
    from .text_guidance import TextDoctor
    from .text_probability import Hypothesis, TextPrefixModel
    from .token_bytes import TokenBytes
