"""Where the processor's doctors and references come from: loading them, the weights and guidance they recorded,
and the checks that they share the patient's vocabulary."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..doctor.config import DoctorConfig
from ..utils.adapters import has_adapter
from ..utils.constants import ADAPTER_CONFIG_NAME, TOKENIZER_FILES
from ..utils.hub import check_name_or_path


if TYPE_CHECKING:
    from transformers import PreTrainedModel

REFERENCE_KINDS = "None, 'none', 'patient', 'initial', 'base', a causal LM, or a local path or Hub id of one"
_TOKENIZER_KWARGS = ("cache_dir", "local_files_only", "revision", "subfolder", "token", "trust_remote_code")
PATIENT, INITIAL, BASE = "patient", "initial", "base"  # the guided patient; the doctor's initial weights; a LoRA base


def load_causal_lm(name_or_path, **from_pretrained_kwargs) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained`, or for a LoRA adapter folder `AutoPeftModelForCausalLM.from_pretrained`
    (a `PeftModel`: PEFT's own loader, which every supported transformers release agrees with, where transformers'
    integration of older releases drops `modules_to_save` weights). Imported here rather than at module import (the
    processor imports fast).

    A local path (see `tfpo_hf.utils.hub.looks_like_local_path`) is checked, and `~` expanded, before any Hub call;
    pickled weights are refused unless `use_safetensors=False` is given (`tfpo_hf.utils.hub.safe_loading_kwargs`);
    `trust_remote_code` is passed on only when the caller gives it.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: a checkpoint that holds pickled weights only.
    """
    from ..utils.hub import find_file, hub_kwargs_of, resolve_local_path, safe_loading_kwargs

    name_or_path = resolve_local_path(name_or_path)
    from_pretrained_kwargs = safe_loading_kwargs(name_or_path, from_pretrained_kwargs)
    if find_file(name_or_path, ADAPTER_CONFIG_NAME, hub_kwargs_of(from_pretrained_kwargs)):
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(name_or_path, **from_pretrained_kwargs).eval()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(name_or_path, **from_pretrained_kwargs)


def check_causal_lm(argument: str, value, accepted: str) -> None:
    """Refuse a `value` of `argument` that is not a causal LM (`None`, a number, a tokenizer...), naming what was
    given and what `accepted` says is."""
    if not is_causal_lm(value):
        raise ValueError(f"`{argument}` must be {accepted}, got {described(value)}.")


def is_causal_lm(value) -> bool:
    """Whether `value` is a model with a config and input embeddings (a transformers LM, a `PeftModel`)."""
    return isinstance(value, torch.nn.Module) and hasattr(value, "config") and hasattr(value, "get_input_embeddings")


def described(value) -> str:
    """`value` for an error message: its repr when short and plain, else its type (a model's repr is pages long)."""
    if value is None or isinstance(value, (bool, numbers.Number, str, bytes)):
        return repr(value)
    return f"a {type(value).__name__}"


def doctor_weights(betas: float | Sequence[float], num_doctors: int) -> list[float]:
    """`betas` as one finite float per doctor (a single number applies to every doctor). A number may be a Python,
    numpy or 0-d torch one; a list may be a `list`, `tuple`, or 1-d tensor or array.

    Raises:
        ValueError: on a count that differs from `num_doctors`, or a weight that is not a finite real number.
    """
    betas = plain_number(betas)
    if isinstance(betas, numbers.Real):
        values = [betas] * num_doctors
    elif (isinstance(betas, Sequence) and not isinstance(betas, (str, bytes))) or getattr(betas, "ndim", None) == 1:
        values = list(betas)
    else:
        raise ValueError(
            f"betas must be a finite real number or a list of them (one per doctor), got {betas!r}: pass a float "
            "such as `betas=2.0`, or `betas=[2.0, 1.0]`."
        )
    values = [finite_weight(f"betas[{i}]", value) for i, value in enumerate(values)]
    if len(values) != num_doctors:
        raise ValueError(f"Got {len(values)} betas for {num_doctors} doctors: give one beta, or one per doctor.")
    return values


def finite_weight(name: str, value) -> float:
    """`value` as a float, refusing what is not a finite real number (NaN would turn every score into NaN)."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite real number (a Python, numpy or 0-d torch number), got {value!r}: pass a "
            "float such as 2.0 (a string is not parsed)."
        )
    return float(value)


def plain_number(value):
    """A numpy scalar or a 0-d tensor / array as the Python number it holds; any other value as it is."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def recorded_weights(configs: list[DoctorConfig], betas, alpha) -> tuple[float | Sequence[float], float]:
    """The weights to decode with: those given, else each doctor's recorded `beta` (`UNRECORDED_BETA` when it records
    none) and the doctors' recorded `alpha` when they agree (else 1)."""
    if betas is None:
        betas = [config.decoding_beta for config in configs]
    if alpha is None:
        alphas = {config.alpha for config in configs if config.alpha is not None}
        alpha = alphas.pop() if len(alphas) == 1 else 1.0
    return betas, finite_weight("alpha", alpha)


def saved_tokenizer(source: str, hub_lookup: bool, from_pretrained_kwargs: dict):
    """The tokenizer saved with a doctor checkpoint at `source` (a local directory, or a Hub id if `hub_lookup`), or
    `None` when there is none."""
    kwargs = {key: value for key, value in from_pretrained_kwargs.items() if key in _TOKENIZER_KWARGS}
    if os.path.isdir(source):
        folder = os.path.join(source, kwargs.get("subfolder", ""))
        if not any(os.path.isfile(os.path.join(folder, name)) for name in TOKENIZER_FILES):
            return None
    elif not hub_lookup:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError:
        return None


def resolve_references(
    doctors: list[PreTrainedModel],
    references,
    recorded: list[DoctorConfig],
    tokenizers: list,
    from_pretrained_kwargs: dict,
) -> list:
    """One reference per doctor: `None` (the mix), `"patient"`, `"base"` (a LoRA doctor's base) or a model; `references`
    is what the caller gave (`None`: each doctor's recorded guidance); a reference model is checked against the
    doctor's entry of `tokenizers` (its own, else the patient's; `None`: unchecked)."""
    if references is None:
        references = [
            (PATIENT if config.guidance_reference == PATIENT else INITIAL) if config.uses_ratio else None
            for config in recorded
        ]
    elif isinstance(references, (str, os.PathLike, torch.nn.Module)):
        references = [references] * len(doctors)
    elif not isinstance(references, (list, tuple)):
        raise ValueError(f"`references` must be {REFERENCE_KINDS}, or a list of them, got {described(references)}.")
    if len(references) != len(doctors):
        raise ValueError(f"Got {len(references)} references for {len(doctors)} doctors.")
    resolved = []
    for index, (doctor, config, reference, tokenizer) in enumerate(zip(doctors, recorded, references, tokenizers)):
        if not (reference is None or isinstance(reference, (str, os.PathLike)) or is_causal_lm(reference)):
            raise ValueError(f"`references[{index}]` must be {REFERENCE_KINDS}, got {described(reference)}.")
        if reference in (None, "none"):
            resolved.append(None)
        elif reference == PATIENT:
            resolved.append(PATIENT)
        elif reference == BASE and not has_adapter(doctor):
            raise ValueError(
                f"Doctor {doctor.name_or_path!r} has no PEFT adapter, so it has no base to use as the reference: "
                "pass `references='initial'` or the model it started from."
            )
        elif reference == BASE:
            resolved.append(BASE)
        elif reference == INITIAL:
            resolved.append(BASE if has_adapter(doctor) else initial_model(doctor, config, from_pretrained_kwargs))
        else:
            model = reference
            if isinstance(reference, (str, os.PathLike)):
                check_name_or_path(f"references[{index}]", reference)  # an empty name: not "path  does not exist"
                model = load_causal_lm(reference, **from_pretrained_kwargs)
            if tokenizer is not None:
                check_vocabulary(model, tokenizer, None)
            resolved.append(model)
    return resolved


def initial_model(doctor: PreTrainedModel, config: DoctorConfig, from_pretrained_kwargs: dict) -> PreTrainedModel:
    """The weights a full-weight doctor started from: its recorded `initial_name_or_path`, loaded and cut to
    the recorded depth (a doctor made of the patient's first layers)."""
    name = config.initial_name_or_path
    try:
        if not name:
            raise OSError("no name recorded")
        warn_if_recorded_local_path(doctor, name)
        reference = load_causal_lm(name, **from_pretrained_kwargs)
    except OSError as error:
        raise ValueError(
            f"Doctor {doctor.name_or_path!r} was trained against its initial weights ({name!r}), which could not "
            f"be loaded ({error}): pass that model as `references=` (or `references='none'` to mix the doctor in "
            "without one)."
        ) from error
    num_layers = config.initial_num_layers
    if num_layers and num_layers < len(reference.get_decoder().layers):
        from ..doctor.modeling import truncated_causal_lm

        reference = truncated_causal_lm(reference, num_layers)
    return reference.eval()


def warn_if_recorded_local_path(doctor: PreTrainedModel, name: str) -> None:
    """Warn, naming it, before reading a local path that a doctor's `doctor_config.json` recorded: a path the caller
    did not name (a doctor downloaded from the Hub may record any path of the machine it was trained on)."""
    from ..utils.hub import looks_like_local_path

    if looks_like_local_path(name):
        warnings.warn(
            f"Doctor {doctor.name_or_path!r} records its initial weights at the local path {name!r} "
            "(`initial_name_or_path` in its doctor_config.json): loading its reference from there. Pass "
            "`references=` to choose the reference yourself (or `references='none'` to load nothing).",
            stacklevel=5,  # the caller of `DoctorLogitsProcessor(...)`
        )


def check_tokenizer(tokenizer) -> None:
    """Refuse a `tokenizer` that is neither `None` nor a transformers tokenizer (a name, a model...)."""
    from transformers import PreTrainedTokenizerBase

    if tokenizer is not None and not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError(
            f"`tokenizer` must be the patient's tokenizer (a `PreTrainedTokenizerBase`) or None, got "
            f"{described(tokenizer)}: load it with `AutoTokenizer.from_pretrained(name)`, `name` being the patient's."
        )


def check_vocabulary(doctor: PreTrainedModel, tokenizer, doctor_tokenizer) -> None:
    """Refuse a doctor whose vocabulary is smaller than the patient tokenizer's, or whose saved tokenizer differs. A
    vocabulary larger than the tokenizer (LM-head padding rows) is fine."""
    name = doctor.name_or_path or type(doctor).__name__
    vocab_size = doctor.config.get_text_config().vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(
            f"Doctor {name!r} has {vocab_size} vocabulary ids, fewer than the {len(tokenizer)} tokens of the "
            f"patient tokenizer {tokenizer.name_or_path!r}: they cannot share a vocabulary. Pick a doctor of the "
            "patient's model family, which uses its tokenizer (its LM head may be wider than the tokenizer, padded, "
            "but never narrower), or give the doctor's own tokenizer (`doctor_tokenizers=`) to guide across "
            "tokenizers."
        )
    if doctor_tokenizer is not None and doctor_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"Doctor {name!r} was saved with tokenizer {doctor_tokenizer.name_or_path!r} ({len(doctor_tokenizer)} "
            f"tokens), which differs from the patient tokenizer {tokenizer.name_or_path!r} ({len(tokenizer)} "
            "tokens): guidance needs both models to use the same vocabulary."
        )
