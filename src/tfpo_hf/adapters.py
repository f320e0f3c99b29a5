"""PEFT adapters seen one way, whether a model is a `peft.PeftModel` or a transformers model that loaded an adapter
itself (`AutoModelForCausalLM.from_pretrained` on an adapter folder): is there one, what is its base, switch it off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def has_adapter(model: nn.Module) -> bool:
    """Whether `model` carries a PEFT adapter (a `PeftModel`, or a transformers model with one loaded)."""
    return hasattr(model, "get_base_model") or bool(getattr(model, "_hf_peft_config_loaded", False))


def base_model_name_or_path(model: nn.Module) -> str:
    """The name or path of the weights `model` started from: the base model of an adapter, else the model itself."""
    if hasattr(model, "get_base_model"):
        return str(model.get_base_model().config.name_or_path)
    return str(model.config.name_or_path)


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, `model` computes as its base model (every adapter off); they are back on afterwards.

    Raises:
        ValueError: when `model` has no adapter (there is no base to fall back to).
    """
    if hasattr(model, "disable_adapter"):  # peft.PeftModel
        with model.disable_adapter():
            yield model
    elif getattr(model, "_hf_peft_config_loaded", False):  # transformers' PEFT integration
        model.disable_adapters()
        try:
            yield model
        finally:
            model.enable_adapters()
    else:
        raise ValueError(
            f"{type(model).__name__} has no PEFT adapter, so it has no base model to compute the reference with: "
            "give the reference model explicitly."
        )
