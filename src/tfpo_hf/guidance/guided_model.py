"""Guidance for the price of one pass: a patient and LoRA doctors of it in one forward over shared weights.

`GuidedModel` loads each doctor's LoRA adapter into the patient's own modules (PEFT) and, inside its `generate` and
`__call__`, runs every batch as `1 + K` row groups: the patient's rows (adapters off) and one group per active
doctor (its adapter on), through one forward. The base weights are read once per step for all groups and the
low-rank deltas only reach their own rows: each adapter's dropout is replaced by a `RowMask` that zeroes its input on
the other groups' rows (`GroupRowMasks`), or, for adapters a mask cannot stand in for (`modules_to_save`, DoRA),
PEFT's per-row adapter names route the rows. The output's logits are the mixed scores

    alpha * log p_patient + sum_i beta_i * (log p_doctor_i - log p_patient)

(ratio guidance: a LoRA copy of the patient has the patient as its reference; a doctor recorded as `mix` adds
beta_i * log p_doctor_i), so `generate`'s own processors and warpers act on them after the mix, exactly as after
`DoctorLogitsProcessor`. The KV cache holds `1 + K` times the rows (`GroupedCache`), and beam search reorders every
group with the same beams.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence

import torch
from transformers import PreTrainedModel

from ..doctor.config import DoctorConfig
from ..utils.adapters import (
    BASE_ROWS,
    RowMask,
    adapter_rows_masked,
    group_row_weights,
    row_maskable,
    rows_by_adapter,
)
from ..utils.constants import ADAPTER_CONFIG_NAME
from ..utils.hub import find_file, hub_kwargs_of, resolve_local_path, safe_loading_kwargs
from .cached_forward import GroupedCache, Stream
from .loading import described, doctor_weights, is_causal_lm, recorded_weights


BATCH_INPUTS = ("input_ids", "inputs_embeds", "attention_mask", "position_ids", "token_type_ids")


class GuidedModel:
    r"""
    The patient guided by LoRA doctors of itself, in one forward per step: each doctor's adapter is loaded into the
    patient's own modules (PEFT), and every batch runs as `1 + K` row groups (the patient's rows with the adapters
    off, then one group per active doctor) through one pass over the shared weights. The forward's `logits` are the
    mixed scores

        alpha * log p_patient(y | s_t) + sum_i beta_i * [log p_doctor_i(y | s_t) - log p_patient(y | s_t)]

    (ratio guidance against the patient, the reference of a LoRA copy of it; a doctor recorded as `mix` adds
    beta_i * log p_doctor_i), so `generate`'s own processors and warpers act on them afterwards, as they do after
    [`DoctorLogitsProcessor`], and both give the same tokens.

    `generate` takes everything `patient.generate` takes (greedy search, sampling, beam search,
    `num_return_sequences`, left padding, stopping criteria, streamers, logits processors); beam search ranks beams by
    the log-probabilities of the mix, as the processor does with `normalize=True`. Outside this object's calls the
    patient holds its own modules again (the adapters' layers are swapped in for each call and out after it), so
    plain decoding of the patient is exactly what it was, at the same speed. For
    doctors that are not LoRA adapters of this patient (another size, full weights), use [`DoctorLogitsProcessor`].

    Args:
        patient (`PreTrainedModel`):
            The frozen patient, a transformers causal LM that does not already hold a PEFT adapter.
        doctors (`str`, `os.PathLike`, `PeftModel`, `DoctorModel`, or a `list` of them):
            LoRA doctor(s): saved adapter folders or Hub ids (as [`TFPOTrainer`] saves a LoRA doctor), or in-memory
            PEFT models / `DoctorModel`s whose LM is a LoRA adapter of a copy of the patient.
        betas (`float` or `list[float]`, *optional*):
            Weight of each doctor; one number applies to every doctor. Defaults to each doctor's recorded `beta`
            (0.5 when it records none). A doctor with beta 0 gets no rows at all.
        alpha (`float`, *optional*):
            Weight of the patient's log-probabilities. Defaults to the doctors' recorded `alpha` when they agree,
            else `1.0`.
        from_pretrained_kwargs (`dict[str, Any]`, *optional*):
            `cache_dir`, `revision` and `token`, passed on when loading adapters given as paths or Hub ids;
            `use_safetensors=False` to accept an adapter saved as pickled `adapter_model.bin` (refused otherwise).

    Raises:
        `ValueError`: at construction, for a `patient` that is not a transformers model or already holds a PEFT
        adapter, empty `doctors`, a doctor that is not a LoRA adapter (nor a path or Hub id of one), a saved adapter
        holding pickled weights only, or weights that are not finite real numbers.
        `FileNotFoundError`: a doctor given as a local path that does not exist.
        `RuntimeError`: at a call, while a call of this instance runs in another thread (see below).

    One instance per concurrent generation: the doctors' adapters live in the patient's own modules, and a call
    switches them on and hooks the patient's forward until it returns. A call from another thread meanwhile (of this
    object, or of the patient itself) raises a `RuntimeError` rather than mixing the two batches; calls one after
    the other, from any threads, are fine. Concurrent generations need one patient and one `GuidedModel` each.

    Memory: the KV cache ([`GroupedCache`]) holds `1 + K` times the rows of plain decoding (K active doctors); the
    adapters add their low-rank weights.

    Examples:

    ```python
    >>> from tfpo_hf import GuidedModel
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

    >>> # a saved LoRA doctor works the same way: GuidedModel(patient, "my-lora-doctor")
    >>> tokenizer = tiny_tokenizer()
    >>> tokenizer.padding_side = "left"
    >>> patient = tiny_causal_lm()
    >>> guided = GuidedModel(patient, tiny_lora_doctor(patient, seed=1), betas=2.0)
    >>> guided.betas, guided.alpha, guided.adapter_names
    ([2.0], 1.0, ['doctor_0'])
    >>> inputs = tokenizer(["Hi!", "Tell me about cats."], padding=True, return_tensors="pt")
    >>> out = guided.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    >>> out.shape  # (batch_size, prompt_length + max_new_tokens)
    torch.Size([2, 23])
    >>> guided(**inputs).logits.shape  # the mixed scores, (batch_size, sequence_length, vocab_size)
    torch.Size([2, 19, 259])

    ```
    """

    def __init__(
        self,
        patient: PreTrainedModel,
        doctors,
        betas: float | Sequence[float] | None = None,
        alpha: float | None = None,
        **from_pretrained_kwargs,
    ):
        if hasattr(patient, "peft_config"):
            raise ValueError("The patient already holds a PEFT adapter: give GuidedModel the plain patient model.")
        if not isinstance(patient, PreTrainedModel):
            raise ValueError(
                "`patient` must be a transformers causal LM (a `PreTrainedModel`, such as "
                f"`AutoModelForCausalLM.from_pretrained(...)`), got {described(patient)}."
            )
        sources = list(doctors) if isinstance(doctors, (list, tuple)) else [doctors]
        if not sources:
            raise ValueError("`doctors` is empty: give at least one LoRA doctor.")
        for index, source in enumerate(sources):
            if not (
                isinstance(source, (str, os.PathLike)) or is_causal_lm(getattr(source, "pretrained_model", source))
            ):
                argument = f"doctors[{index}]" if isinstance(doctors, (list, tuple)) else "doctors"
                raise ValueError(f"`{argument}` must be {LORA_DOCTOR_KINDS}, got {described(source)}.")
        self.patient = patient
        self._owner: int | None = None  # the thread of the call under way, if any
        self._ownership = threading.Lock()  # held only while a call starts or ends, never across a forward
        self.peft_model = None  # the patient wrapped by PEFT once the first adapter is in
        self.adapter_names = [f"doctor_{i}" for i in range(len(sources))]
        requires_grad = {parameter: parameter.requires_grad for parameter in patient.parameters()}
        recorded = [
            self._load_adapter(source, name, from_pretrained_kwargs)
            for source, name in zip(sources, self.adapter_names)
        ]
        self.peft_model.base_model.disable_adapter_layers()
        self._adapter_modules = adapter_modules(self.patient)
        self._row_maskable = row_maskable(self.patient, self.adapter_names)
        self._unwrap()  # outside our calls the patient holds its own modules again: plain decoding is untouched
        for parameter, flag in requires_grad.items():  # PEFT froze them (which changes some kernels' rounding)
            parameter.requires_grad_(flag)
        self.mixes = ["mix" if config.guidance == "mix" else "ratio" for config in recorded]
        betas, self.alpha = recorded_weights(recorded, betas, alpha)
        self.betas: list[float] = []
        self.set_betas(betas)

    # ------------------------------------------------------------------ loading
    def _load_adapter(self, source, adapter_name: str, from_pretrained_kwargs: dict) -> DoctorConfig:
        """Load one doctor's adapter into the patient under `adapter_name`; returns its recorded `doctor_config`."""
        from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        if isinstance(source, (str, os.PathLike)):
            source = resolve_local_path(source)
            hub_kwargs = hub_kwargs_of(from_pretrained_kwargs)
            if not find_file(source, ADAPTER_CONFIG_NAME, hub_kwargs):
                raise ValueError(_not_lora_message(source))
            safe_loading_kwargs(source, from_pretrained_kwargs)  # PEFT itself would unpickle an adapter_model.bin
            if self.peft_model is None:
                self.peft_model = PeftModel.from_pretrained(
                    self.patient, source, adapter_name=adapter_name, **hub_kwargs
                )
            else:
                self.peft_model.load_adapter(source, adapter_name=adapter_name, **hub_kwargs)
            return DoctorConfig.from_pretrained(source, **hub_kwargs)
        lm = getattr(source, "pretrained_model", source)
        if not hasattr(lm, "peft_config") or not hasattr(lm, "get_base_model"):
            raise ValueError(_not_lora_message(getattr(lm, "name_or_path", type(lm).__name__)))
        config = lm.peft_config[lm.active_adapter]
        state = get_peft_model_state_dict(lm, adapter_name=lm.active_adapter)
        if self.peft_model is None:
            self.peft_model = get_peft_model(self.patient, config, adapter_name=adapter_name)
        else:
            self.peft_model.add_adapter(adapter_name, config)
        set_peft_model_state_dict(self.peft_model, state, adapter_name=adapter_name)
        return DoctorConfig.from_dict(getattr(source, "doctor_config", None))

    # ------------------------------------------------------------------ weights
    def set_betas(self, betas: float | Sequence[float]) -> None:
        """Change the doctors' weights between calls; a doctor with beta 0 gets no rows at all."""
        self.betas = doctor_weights(betas, len(self.adapter_names))

    def _active(self) -> list[int]:
        return [i for i, beta in enumerate(self.betas) if beta != 0]

    # ------------------------------------------------------------------ the fused pass
    def mix(self, logits: torch.Tensor, groups: int) -> torch.Tensor:
        """Mixed scores of shape `(batch_size, ..., vocab_size)` (float32) from the logits of shape
        `(groups * batch_size, ..., vocab_size)` of the patient's rows followed by each active doctor's rows."""
        logps = torch.log_softmax(logits.float(), dim=-1).chunk(groups, dim=0)
        patient = logps[0]
        mixed = self.alpha * patient
        for doctor, index in zip(logps[1:], self._active()):
            term = doctor - patient if self.mixes[index] == "ratio" else doctor
            mixed = mixed + self.betas[index] * term
        return mixed.masked_fill(torch.isneginf(patient) | torch.isnan(mixed), float("-inf"))

    @contextlib.contextmanager
    def fused(self) -> Iterator[int]:
        """Inside the block, every forward of the patient runs its batch as `1 + K` row groups and returns mixed
        logits; yields the number of groups (1 when every beta is 0: the patient alone, untouched)."""
        active = self._active()
        groups = 1 + len(active)
        if groups == 1:
            yield 1
            return
        row_adapters = [BASE_ROWS] + [self.adapter_names[i] for i in active]
        with self._ownership:
            if self._owner is not None:
                raise RuntimeError(CONCURRENT_CALLS)
            self._owner = owner = threading.get_ident()

        row_masks = GroupRowMasks([self.adapter_names[i] for i in active]) if self._row_maskable else None

        def expand_batch(module, args, kwargs):
            if threading.get_ident() != owner:  # the patient called from another thread while it is guided
                raise RuntimeError(CONCURRENT_CALLS)
            if row_masks is not None:
                batch = next(kwargs[name] for name in ("input_ids", "inputs_embeds") if kwargs.get(name) is not None)
                row_masks.size(len(batch), batch.device)
            for name in BATCH_INPUTS:
                if isinstance(kwargs.get(name), torch.Tensor):
                    kwargs[name] = torch.cat([kwargs[name]] * groups, dim=0)
            return args, kwargs

        def mix_logits(module, args, kwargs, output):
            output.logits = self.mix(output.logits, groups)
            return output

        try:
            self._wrap()
            self.peft_model.base_model.enable_adapter_layers()
            handles = [
                self.patient.register_forward_pre_hook(expand_batch, with_kwargs=True),
                self.patient.register_forward_hook(mix_logits, with_kwargs=True),
            ]
            rows = row_masks.applied(self.patient) if row_masks else rows_by_adapter(self.patient, row_adapters)
            try:
                with rows:
                    yield groups
            finally:
                for handle in handles:
                    handle.remove()
                self.peft_model.base_model.disable_adapter_layers()
                self._unwrap()
        finally:
            self._owner = None

    def _wrap(self) -> None:
        """Put the adapters' layers (PEFT's LoRA layers and `modules_to_save` wrappers) back into the patient."""
        for parent, name, wrapper, _ in self._adapter_modules:
            setattr(parent, name, wrapper)

    def _unwrap(self) -> None:
        """Give the patient its own modules back, so that it runs exactly as before (no PEFT layer in its forward)."""
        for parent, name, _, original in self._adapter_modules:
            setattr(parent, name, original)

    def generate(self, *args, **kwargs):
        """`patient.generate` with the doctors fused in (a `GroupedCache` is made unless a cache is given)."""
        with self.fused() as groups:
            if groups > 1 and kwargs.get("cache") is None and kwargs.get("past_key_values") is None:
                cache = GroupedCache(config=self.patient.config)
                cache.groups = groups
                kwargs[Stream(self.patient).cache_kwarg()] = cache
            return self.patient.generate(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        """One forward of the patient with the doctors fused in: `logits` are the mixed scores."""
        with self.fused():
            return self.patient(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.patient.device


class GroupRowMasks:
    """The row groups of a fused forward through `RowMask`s: the patient's rows first, then one group per doctor in
    `adapters`; each doctor's LoRA delta is multiplied by 1 on its own rows and 0 on every other row (PEFT's per-row
    adapter names without the routing: every adapter's low-rank product runs on the whole batch, cheap next to the
    routing's indexing at decoding sizes)."""

    def __init__(self, adapters: list[str]):
        self.adapters = adapters
        self.masks = {adapter: RowMask(torch.zeros(0, 1, 1)) for adapter in adapters}
        self._rows: tuple[int, torch.device] | None = None

    def size(self, rows: int, device: torch.device) -> None:
        """Fit the masks to a forward of `rows` rows per group."""
        if self._rows == (rows, device):
            return
        for group, mask in enumerate(self.masks.values(), start=1):
            mask.row_weights = group_row_weights(1 + len(self.adapters), rows, group, device)
        self._rows = (rows, device)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Inside the block, every LoRA layer of `model` computes each of `adapters` (all active at once) through its
        mask in place of its dropout; afterwards the layers are as before."""
        lora_layers = {name: layer for name, layer in model.named_modules() if hasattr(layer, "lora_dropout")}
        previous = {name: list(layer.active_adapters) for name, layer in lora_layers.items()}
        for layer in lora_layers.values():
            layer.set_adapter(self.adapters)
        try:
            with contextlib.ExitStack() as stack:
                for adapter, mask in self.masks.items():
                    layer_masks = {name: mask for name, layer in lora_layers.items() if adapter in layer.lora_dropout}
                    stack.enter_context(adapter_rows_masked(model, adapter, layer_masks))
                yield
        finally:
            for name, adapters in previous.items():
                lora_layers[name].set_adapter(adapters)


def adapter_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module, torch.nn.Module]]:
    """`(parent, attribute, adapter layer, the module it wraps)` for every outermost PEFT layer in `model` (LoRA
    layers, `modules_to_save` wrappers)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, BaseTunerLayer):
                found.append((parent, name, child, child.get_base_layer()))
            elif isinstance(child, ModulesToSaveWrapper):
                found.append((parent, name, child, child.original_module))
    return found


CONCURRENT_CALLS = (
    "This GuidedModel (or its patient) was called from another thread while a call of it was under way: its "
    "doctors' adapters live in the patient's own modules, so calls at the same time would mix their batches. Make "
    "one GuidedModel, on its own patient, per concurrent generation (calls one after the other may share one)."
)
LORA_DOCTOR_KINDS = (
    "a LoRA doctor (a saved adapter folder or its Hub id, a `PeftModel`, or a `DoctorModel` whose LM is a LoRA "
    "adapter), or a list of them"
)


def _not_lora_message(name: str) -> str:
    return (
        f"Doctor {name!r} is not a LoRA adapter of the patient, so it cannot share the patient's forward: use "
        "`DoctorLogitsProcessor` (any doctor, any size) for it."
    )
