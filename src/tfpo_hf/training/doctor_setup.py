"""The one place a doctor is built: from a model id, a causal LM or a copy of the patient (whole or truncated),
with LoRA (the default settings the CLI and the demo use are here) or in full, and where what it was trained with
is recorded in its `DoctorConfig`."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..cross_tokenizer.token_bytes import TokenBytes
from ..doctor.modeling import DoctorModel
from ..guidance.loading import check_vocabulary, saved_tokenizer
from ..utils.adapters import base_model_name_or_path, has_adapter
from ..utils.validation import _given
from .config import TFPOConfig


# The LoRA a doctor trains with by default (`tfpo-hf train`, the demo): rank 16, alpha 32, every linear layer, no
# dropout; on a whole copy of the patient only (see `doctor_uses_lora`).
DEFAULT_LORA_RANK = 16
DEFAULT_LORA_ALPHA = 32
DEFAULT_LORA_TARGET_MODULES = "all-linear"
DEFAULT_LORA_DROPOUT = 0.0


def doctor_uses_lora(whole_copy: bool, use_peft: bool | None = None) -> bool:
    """Whether a doctor trains with LoRA: `use_peft` when given, else exactly when the doctor is a whole copy of the
    patient (`whole_copy`). A truncated copy or a separate doctor trains in full by default: a truncated copy's
    adapter could not be reloaded (its base checkpoint is the full-depth patient)."""
    return whole_copy if use_peft is None else use_peft


def default_lora_config():
    """The doctor's default `peft.LoraConfig` (a causal LM; rank, alpha, targets and dropout as above)."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=DEFAULT_LORA_RANK,
        lora_alpha=DEFAULT_LORA_ALPHA,
        target_modules=DEFAULT_LORA_TARGET_MODULES,
        lora_dropout=DEFAULT_LORA_DROPOUT,
        bias="none",
    )


def default_peft_config(whole_copy: bool):
    """`default_lora_config()` for a whole copy of the patient, None (train in full) for any other doctor."""
    return default_lora_config() if doctor_uses_lora(whole_copy) else None


def doctor_from_patient(patient: PreTrainedModel, num_layers: int = 0) -> DoctorModel:
    """A float32 doctor made of the patient's first `num_layers` layers (0: all of them, the usual LoRA base)."""
    doctor = DoctorModel.from_patient(patient, num_layers or None)
    doctor.pretrained_model.float()  # the doctor trains in float32 even next to a bf16 patient
    return doctor


def check_model_argument(model: Any) -> None:
    """Refuse, naming the argument, a `model` that is neither a `DoctorModel`, a causal LM nor a model id."""
    is_causal_lm = isinstance(model, nn.Module) and hasattr(model, "get_output_embeddings")
    if not (isinstance(model, (str, DoctorModel)) or is_causal_lm):
        raise TypeError(
            f"TFPOTrainer needs `model`, the doctor to train: it must be a DoctorModel, a causal LM or a model id "
            f"(a Hub id or a local path), got {_given(model)}. To start from a copy of the patient, pass "
            "`DoctorModel.from_patient(patient)`."
        )


PROCESSING_CLASS_FIX = "Pass `processing_class=AutoTokenizer.from_pretrained(name)`, `name` being the patient's."


def resolve_processing_class(processing_class: Any, doctor: DoctorModel) -> PreTrainedTokenizerBase:
    """The trainer's tokenizer: `processing_class`, else the one saved with the doctor's checkpoint.

    Raises:
        ValueError: no `processing_class` and no tokenizer could be loaded for the doctor (one built in memory has
            no checkpoint).
        TypeError: `processing_class` is not a tokenizer.
    """
    if processing_class is None:
        processing_class = _saved_doctor_tokenizer(doctor.config.name_or_path)
    if not isinstance(processing_class, PreTrainedTokenizerBase):
        raise TypeError(
            f"TFPOTrainer needs `processing_class`: the tokenizer of the patient, which the doctor shares, got "
            f"{_given(processing_class)}. {PROCESSING_CLASS_FIX}"
        )
    return processing_class


def _saved_doctor_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the doctor's checkpoint `name_or_path`, or a `ValueError` naming `processing_class`."""
    needs = "TFPOTrainer needs `processing_class`: the tokenizer of the patient, which the doctor shares."
    if not name_or_path:
        raise ValueError(
            f"{needs} None was given, and the doctor was built in memory, so there is no checkpoint to load one "
            f"from. {PROCESSING_CLASS_FIX}"
        )
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{needs} None was given, and none could be loaded from the doctor's checkpoint {name_or_path!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). {PROCESSING_CLASS_FIX}"
        ) from error


def make_doctor(model: DoctorModel | PreTrainedModel | str, args: TFPOConfig, peft_config: Any | None) -> DoctorModel:
    """A `DoctorModel` from a doctor, a causal LM (a value head is added) or a model id, with `peft_config`'s adapter
    on its LM. LoRA needs a base the saved adapter can be reloaded onto: a truncated copy of the patient has none
    (its checkpoint name is the full-depth patient's), so it is refused there: train it in full instead."""
    check_model_argument(model)
    if isinstance(model, str):
        doctor = DoctorModel.from_pretrained(model, **(args.model_init_kwargs or {}))
    elif isinstance(model, DoctorModel):
        doctor = model
    else:
        doctor = DoctorModel(model)
    if peft_config is None:
        return doctor
    if has_adapter(doctor.pretrained_model):
        raise ValueError("The doctor already holds a PEFT adapter; do not pass `peft_config` as well.")
    if doctor.doctor_config.is_truncated_copy(base_model_name_or_path(doctor.pretrained_model)):
        depth = doctor.config.get_text_config().num_hidden_layers
        raise ValueError(
            f"The doctor is a truncated copy of the patient ({depth} layers): a LoRA adapter on it could not be "
            "reloaded, since its base checkpoint is the full-depth patient. Train it in full (no `peft_config`; "
            "`--use_peft false` on the command line), or put LoRA on a whole copy (`DoctorModel.from_patient(patient)`)."
        )
    from peft import get_peft_model

    doctor.pretrained_model = get_peft_model(doctor.pretrained_model, peft_config)
    return doctor


def check_doctor(
    doctor: DoctorModel,
    processing_class,
    patient: PreTrainedModel | None,
    args: TFPOConfig,
    source: str | None = None,
    patient_processing_class=None,
) -> None:
    """Refuse a doctor that cannot share the patient's tokens; warn about low-precision weights without mixed
    precision (updates smaller than bf16's resolution are lost: the doctor barely moves).

    Token rewards are indexed by the tokenizer's ids, so the doctor needs an LM-head row for each id of
    `processing_class` and the patient one for each id of its tokenizer (`patient_processing_class`, by default the
    same); their heads may have different widths (models of one family pad them differently,
    Qwen2.5-7B to 152,064 rows and -3B to 151,936 for 151,665 tokens), the rows beyond the tokenizer being padding.
    """
    patient_tokenizer = patient_processing_class or processing_class
    tokenizers = {"doctor": processing_class}
    widths = {"doctor": doctor.pretrained_model.get_output_embeddings().weight.shape[0]}
    if patient is not None:
        tokenizers["patient"] = patient_tokenizer
        widths["patient"] = patient.get_output_embeddings().weight.shape[0]
    narrow = [role for role, width in widths.items() if width < len(tokenizers[role])]
    if narrow and patient_tokenizer is processing_class:
        num_tokens = len(processing_class)
        heads = " and ".join(f"the {role}'s LM head has {width} rows" for role, width in widths.items())
        raise ValueError(
            f"The tokenizer {processing_class.name_or_path!r} has {num_tokens} tokens, but {heads}: token ids "
            f"{min(widths[role] for role in narrow)} to {num_tokens - 1} have no row in the LM head of the "
            f"{' and the '.join(narrow)}. Token rewards are indexed by the tokenizer's ids, so both models need a row "
            "for each (a head may be wider than the tokenizer, padded, never narrower). Pass the tokenizer of the "
            "patient's model family as `processing_class`, and a doctor of that family (or "
            "`DoctorModel.from_patient(patient, num_layers)`); for a doctor of another family, pass the patient's "
            "tokenizer as `patient_processing_class`."
        )
    if narrow:
        role = narrow[0]
        raise ValueError(
            f"The {role}'s tokenizer {tokenizers[role].name_or_path!r} has {len(tokenizers[role])} tokens, but its "
            f"LM head has {widths[role]} rows. Pass each model's own tokenizer: the doctor's as `processing_class`, "
            "the patient's as `patient_processing_class`."
        )
    if patient_tokenizer is not processing_class:
        for tokenizer in (patient_tokenizer, processing_class):
            TokenBytes.from_tokenizer(tokenizer)  # rewards move by bytes: refuses tokenizers that do not spell them
    saved = saved_tokenizer(
        source or doctor.config.name_or_path or "", hub_lookup=source is not None, from_pretrained_kwargs={}
    )
    check_vocabulary(doctor.pretrained_model, processing_class, saved)
    dtype = next(doctor.parameters()).dtype
    if dtype in (torch.bfloat16, torch.float16) and not (args.bf16 or args.fp16):
        warnings.warn(
            f"The doctor's weights are {dtype} and mixed precision is off: updates below {dtype}'s resolution are "
            "lost and the doctor barely trains. Load it in float32 (dtype=torch.float32) and set bf16=True for speed.",
            stacklevel=3,
        )


def record_training_settings(
    doctor: DoctorModel, args: TFPOConfig, uses_reference: bool, patient: PreTrainedModel | None
) -> None:
    """Write into `doctor.doctor_config` (saved as doctor_config.json) the reward settings, the flow reference and the
    decoding defaults: ratio guidance against the reference for a reference-anchored doctor, else the mix."""
    record = doctor.doctor_config
    reference_name = base_model_name_or_path(doctor.pretrained_model)
    depth = doctor.config.get_text_config().num_hidden_layers
    if patient is not None:
        record.patient_name_or_path = patient.config.name_or_path
        # a doctor started from another model (weak to strong) is no copy of this patient, whatever it recorded
        record.copy_of_patient = (
            reference_name == patient.config.name_or_path
            and depth == patient.config.get_text_config().num_hidden_layers
        )
    record.theta, record.tau = args.theta, args.tau
    record.positive_system_prompt, record.negative_system_prompt = (
        args.positive_system_prompt,
        args.negative_system_prompt,
    )
    record.flow_reference = "initial" if uses_reference else "none"
    record.initial_name_or_path, record.initial_num_layers = reference_name, depth
    record.alpha, record.beta = args.guidance_alpha, args.guidance_beta
    record.guidance = "ratio" if uses_reference else "mix"
    # a copy of the patient decodes against the patient's own scores: no extra forward
    record.guidance_reference = ("patient" if record.copy_of_patient else "initial") if uses_reference else None
