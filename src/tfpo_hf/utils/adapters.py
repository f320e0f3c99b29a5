"""PEFT adapters seen one way, whether a model is a `peft.PeftModel` or a transformers model that loaded an adapter
itself (`AutoModelForCausalLM.from_pretrained` on an adapter folder, `load_adapter`): is there one, what is its base,
switch it off, run adapter and base rows in one batch (PEFT's per-row adapter names, or row masks), save it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
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
    """Inside the block, `model` computes as its base model (every adapter off); afterwards each adapter layer is
    as it was before, `requires_grad` flags included (PEFT's own switch marks the adapter trainable again).

    A `PeftModel` uses its own `disable_adapter()`. A transformers model holding an adapter is switched through PEFT's
    tuner layers directly rather than through transformers' `disable_adapters()`, whose PEFT version floor moves
    ahead of PEFT's releases (transformers 5.24 asks for PEFT 0.22): the same layers, the same switch, no floor.

    Raises:
        ValueError: when `model` has no adapter (there is no base to fall back to), or holds no layer that can be
            switched off.
    """
    is_peft_model = hasattr(model, "disable_adapter")
    layers = _adapter_layers(model) if has_adapter(model) else []
    if not layers and not is_peft_model:
        raise ValueError(
            f"{type(model).__name__} has no PEFT adapter layer to switch off, so it has no base model to compute the "
            "reference with: give the reference model explicitly (or load the doctor with `PeftModel.from_pretrained`)."
        )
    requires_grad = {parameter: parameter.requires_grad for layer in layers for parameter in layer.parameters()}
    try:
        if is_peft_model:
            with model.disable_adapter():
                yield model
        else:
            was_disabled = [layer.disable_adapters for layer in layers]
            for layer in layers:
                layer.enable_adapters(False)
            try:
                yield model
            finally:
                for layer, disabled in zip(layers, was_disabled):
                    layer.enable_adapters(not disabled)
    finally:
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)


BASE_ROWS = "__base__"  # PEFT's name, in per-row `adapter_names`, for rows computed without any adapter


def mixed_batch_adapter(model: nn.Module) -> str | None:
    """The name of `model`'s active adapter when rows of it and rows of the base can share one batch (PEFT's
    mixed-batch forward: every tuner layer a LoRA layer, unmerged, without DoRA, one adapter active), else `None`."""
    if not has_adapter(model):
        return None
    from peft.tuners.lora import LoraLayer

    layers = _adapter_layers(model)
    active = {name for layer in layers for name in layer.active_adapters}
    if len(active) != 1:
        return None
    (name,) = active
    for layer in layers:
        if isinstance(layer, LoraLayer):
            if layer.merged or layer.disable_adapters or layer.use_dora.get(name, False):
                return None
        elif not _is_modules_to_save(layer):
            return None
    return name


@contextmanager
def rows_by_adapter(model: nn.Module, row_adapters: Sequence[str]) -> Iterator[None]:
    """Inside the block, each forward of `model` splits its batch into `len(row_adapters)` equal groups of rows, in
    order, and computes the i-th group with adapter `row_adapters[i]` (`BASE_ROWS`: no adapter), in one pass over the
    shared base weights: PEFT's per-row `adapter_names`, set on every LoRA layer and `modules_to_save` wrapper by
    forward pre-hooks (`PeftModel.forward(adapter_names=...)` does the same for a `PeftModel` called directly)."""
    from peft.tuners.lora import LoraLayer

    groups = len(row_adapters)

    def name_rows(module, args, kwargs):
        rows = args[0].shape[0] if args else kwargs["x"].shape[0]
        kwargs["adapter_names"] = [name for name in row_adapters for _ in range(rows // groups)]
        return args, kwargs

    handles = [
        module.register_forward_pre_hook(name_rows, with_kwargs=True)
        for module in model.modules()
        if isinstance(module, LoraLayer) or _is_modules_to_save(module)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class RowMask(nn.Module):
    """Stands in for a LoRA adapter's dropout (identity at inference): multiplies each row of its input by 1 (the
    adapter's rows) or 0 (other rows), so the adapter's delta `B(A(0 * x))` vanishes on the rows it does not own,
    with no hook and no per-row adapter names (which a compiled graph cannot hold either).

    Args:
        row_weights (`torch.Tensor` of shape `(rows, 1, 1)`): 1 for the adapter's rows, 0 for the others.
    """

    def __init__(self, row_weights: torch.Tensor):
        super().__init__()
        self.register_buffer("row_weights", row_weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.row_weights.to(x.dtype)


def row_maskable(model: nn.Module, adapters: Sequence[str] | None = None) -> bool:
    """Whether rows of `adapters` (default: the one adapter that `mixed_batch_adapter` finds) and rows of the base
    can share one forward through `RowMask`s: every tuner layer is a plain LoRA `Linear` (no `modules_to_save`, no
    embedding adapter, no variant such as DoRA) whose dropout for those adapters is off or in eval mode."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    if adapters is None:
        adapter = mixed_batch_adapter(model)
        if adapter is None:
            return False
        adapters = [adapter]
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            return False
        if isinstance(module, BaseTunerLayer):
            if type(module) is not LoraLinear:
                return False
            for adapter in adapters:
                if adapter not in module.lora_A:
                    continue
                dropout = module.lora_dropout[adapter]
                if adapter in module.lora_variant or (not isinstance(dropout, nn.Identity) and dropout.training):
                    return False
    return True


def group_row_weights(groups: int, rows: int, kept_group: int, device: torch.device) -> torch.Tensor:
    """`RowMask` weights, shape `(groups * rows, 1, 1)`, for a batch of `groups` consecutive groups of `rows` rows:
    1 on the rows of `kept_group`, 0 elsewhere."""
    weights = torch.zeros(groups, rows, device=device)
    weights[kept_group] = 1
    return weights.reshape(-1, 1, 1)


def make_row_masks(model: nn.Module, adapter: str, rows: int, device: torch.device) -> dict[str, RowMask]:
    """One `RowMask` per LoRA layer of `adapter` in `model`, by layer name, keeping the first `rows` rows of a batch
    (the adapter's) and zeroing the next `rows` (the base's)."""
    row_weights = group_row_weights(2, rows, 0, device)
    return {
        name: RowMask(row_weights)
        for name, module in model.named_modules()
        if hasattr(module, "lora_dropout") and adapter in module.lora_dropout
    }


@contextmanager
def adapter_rows_masked(model: nn.Module, adapter: str, row_masks: dict[str, RowMask]) -> Iterator[None]:
    """Inside the block, each LoRA layer of `adapter` in `model` applies its delta only to the rows that `row_masks`
    (a `RowMask` per layer name; the same modules from call to call, so a compiled graph sees the same ones) keeps."""
    swapped = []
    for name, module in model.named_modules():
        if name in row_masks:
            swapped.append((module.lora_dropout, module.lora_dropout[adapter]))
            module.lora_dropout[adapter] = row_masks[name]
    try:
        yield
    finally:
        for dropouts, dropout in swapped:
            dropouts[adapter] = dropout


def _is_modules_to_save(module: nn.Module) -> bool:
    from peft.utils import ModulesToSaveWrapper

    return isinstance(module, ModulesToSaveWrapper)


def _adapter_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` that PEFT switches on and off: its tuner layers (LoRA's `Linear`, ...) and the wrappers
    of `modules_to_save`, the same set that `PeftModel.disable_adapter()` toggles."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    return [module for module in model.modules() if isinstance(module, (BaseTunerLayer, ModulesToSaveWrapper))]


def save_adapter(model: nn.Module, save_directory: str | os.PathLike, **save_kwargs) -> None:
    """Write `model`'s adapter in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`).

    A `PeftModel` saves itself. A transformers model holding an adapter is saved through PEFT's own state-dict
    function, as transformers' `save_pretrained` would (keys prefixed `base_model.model.`, the active adapter's
    config), without the version floor of transformers' `get_adapter_state_dict`.

    Raises:
        ValueError: when more than one adapter is active (PEFT's format holds one per folder).
    """
    if hasattr(model, "get_base_model"):
        model.save_pretrained(save_directory, **save_kwargs)
        return
    from peft import get_peft_model_state_dict
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    active = {name for layer in _adapter_layers(model) for name in layer.active_adapters}
    if len(active) != 1:
        raise ValueError(
            f"{type(model).__name__} has {len(active)} active adapters ({sorted(active)}): a saved doctor holds "
            "exactly one. Activate one with `model.set_adapter(name)`, or merge them first."
        )
    (name,) = active
    state = get_peft_model_state_dict(model, adapter_name=name)
    state = {f"base_model.model.{key}": tensor.contiguous() for key, tensor in state.items()}
    save_file(state, os.path.join(save_directory, SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    model.peft_config[name].save_pretrained(save_directory)
