"""Next-token logits of extra causal LMs along one `generate()` call, one cached forward per model and step.

A logits processor only sees `input_ids`; `IncrementalForward` infers from them what each model must be fed: a
prefill of the prompts at the first call, then one new token per row, with the caches reordered when beam search
reorders its rows and restarted when a new `generate` call begins.
"""

from __future__ import annotations

import inspect
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from ..utils.adapters import (
    BASE_ROWS,
    RowMask,
    adapter_disabled,
    adapter_rows_masked,
    make_row_masks,
    mixed_batch_adapter,
    row_maskable,
    rows_by_adapter,
)
from ..utils.logps import position_ids_from_mask
from .static_decoding import StaticDecoder


if TYPE_CHECKING:
    from transformers import CompileConfig, PreTrainedModel


class GroupedCache(DynamicCache):
    """A `DynamicCache` whose rows are `groups` copies of the batch (for instance the patient's rows, then each
    doctor's rows): the batch operations applied with indices over one copy (beam reordering, expansion, selection)
    are applied to every copy."""

    groups: int = 1
    # A LoRA stream with its base's rows: whether they share the forward through `RowMask`s (else PEFT's per-row
    # adapter names), decided at the first forward, and the masks of its layers for the last forward's row count.
    row_maskable: bool | None = None
    row_masks: dict[str, RowMask] | None = None

    def _expanded(self, indices: torch.LongTensor) -> torch.LongTensor:
        rows = next((layer.keys.shape[0] for layer in self.layers if getattr(layer, "is_initialized", False)), None)
        if rows is None:
            return indices
        per_group = rows // self.groups
        return torch.cat([indices + group * per_group for group in range(self.groups)])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(self._expanded(beam_idx))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(self._expanded(indices))

    def batch_repeat_interleave(self, repeats: int) -> None:
        rows = next((layer.keys.shape[0] for layer in self.layers if getattr(layer, "is_initialized", False)), 0)
        per_group = rows // self.groups
        super().batch_select_indices(self._expanded(torch.arange(per_group).repeat_interleave(repeats)))


def cache_kwarg(model: PreTrainedModel) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x: the name `model` itself takes, read from the
    wrapped model's signature when the model is a wrapper (PEFT) whose `forward` takes `**kwargs`."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "past_key_values" if "past_key_values" in inspect.signature(type(model).forward).parameters else "cache"


@dataclass(frozen=True)
class Stream:
    """One causal LM to run alongside the patient: `model`, or its base (adapter disabled) if `base_only`. With
    `with_base`, a LoRA model's rows and its base's rows share one forward (`rows_by_adapter`), which gives two
    logits: the model's, then the base's."""

    model: PreTrainedModel
    base_only: bool = False
    with_base: bool = False

    @property
    def outputs(self) -> int:
        return 2 if self.with_base else 1

    def cache_kwarg(self) -> str:
        return cache_kwarg(self.model)


@dataclass
class GenerationState:
    """What `IncrementalForward` keeps of the generation under way: each call works on the state it started with, so
    a thread that takes the instance over gets a fresh state and never shares caches with the one it interrupted."""

    streams: tuple[Stream, ...] = ()
    input_ids: torch.LongTensor | None = None  # (rows, length) seen at the previous call
    mask: torch.LongTensor | None = None  # (rows, length) attention mask of those tokens
    group_size: int = 1  # rows that `generate` made from one prompt (beams, returned sequences)
    caches: list[DynamicCache | StaticDecoder] = field(default_factory=list)


class IncrementalForward:
    """Feeds streams what is new in `input_ids` and returns their next-token logits.

    - **Batch expansion.** Rows that `generate` duplicates (`num_return_sequences`, beams) are prefilled as they come.
    - **Beam search.** Each row's parent is a previous call's row whose tokens equal `input_ids[:, :-1]` (from the
      same prompt when an attention mask is given); caches and masks are reordered with `batch_select_indices`.
    - **Left padding.** The prompts' attention mask is used when set (its rows repeated to an expanded batch);
      without one, the leading run of `pad_token_id` of each row is padding. Position ids are `cumsum(mask) - 1`.
    - **New generation.** A call whose batch size differs, whose length is not the previous one plus one, whose rows
      do not extend the previous rows, or whose streams differ, starts over with a fresh prefill.
    - **One generation at a time.** The state belongs to the thread of the last call. A call from another thread
      starts a new generation there and interrupts the owner's: the owner's next call that continues it raises a
      `RuntimeError` (one instance per concurrent generation), while a later generation of its own starts afresh, so
      generations one after the other in any threads work. Each call costs two comparisons of thread ids.
    - **Fixed shapes.** With a `compile_config`, each stream decodes through a `StaticDecoder` (static cache, steps
      through the model's compiled call: one captured graph per cache bucket on a GPU); without one, through a
      `GroupedCache` in eager mode.

    Args:
        pad_token_id: token treated as left padding when no attention mask is set.
        attention_mask: `(batch_size, prompt_length)` mask of the prompts of the next `generate` call.
        compile_config: how the streams' one-token steps are compiled (`None`: eager, dynamic caches).
    """

    def __init__(
        self,
        pad_token_id: int | None = None,
        attention_mask: torch.Tensor | None = None,
        compile_config: CompileConfig | None = None,
    ):
        self.pad_token_id = pad_token_id
        self.attention_mask = attention_mask
        self.compile_config = compile_config
        self._owner: int | None = None  # the thread whose generation `_state` holds
        self._interrupted: dict[int, torch.LongTensor] = {}  # thread -> its `input_ids` when another took over
        self._ownership = threading.Lock()  # held only while the owner changes, never across a forward
        self._state = GenerationState()

    @property
    def attention_mask(self) -> torch.Tensor | None:
        return self._attention_mask

    @attention_mask.setter
    def attention_mask(self, attention_mask: torch.Tensor | None) -> None:
        """A mask applies to exactly one generation: the next one that starts after it is set."""
        self._attention_mask = attention_mask
        self._mask_is_new = True

    def reset(self) -> None:
        """Drop the caches; the next call prefills its whole `input_ids`. Called from a thread other than the one
        whose generation the caches hold, that generation is interrupted (refused at its next call)."""
        with self._ownership:
            if self._owner != threading.get_ident():
                self._interrupt_owner()
            self._owner = None
            self._state = GenerationState()

    def __call__(self, streams: list[Stream], input_ids: torch.LongTensor, device: torch.device) -> list[torch.Tensor]:
        """Next-token logits `(batch_size, vocab_size_i)` after `input_ids` `(batch_size, length)`, in the order of
        `streams`, one per output of each (a `with_base` stream gives the model's, then its base's).

        Raises:
            RuntimeError: when another thread started a generation on this instance while this thread's was going on.
        """
        thread = threading.get_ident()
        state = self._state  # read before the owner: if this thread owns it, no other thread replaced it since
        if self._owner != thread:
            state = self._take_over(thread, input_ids)
        for model in {id(s.model): s.model for s in streams}.values():  # outside inference mode: params stay trainable
            if model.device != device and getattr(model, "hf_device_map", None) is None:
                model.to(device)
        with torch.inference_mode():
            parents = self._parents(input_ids) if tuple(streams) == state.streams else None
            if parents is None:
                self._check_prefill(streams, input_ids)
                mask = self._prompt_attention_mask(state, input_ids)
                position_ids = position_ids_from_mask(mask)
                new_tokens = input_ids
                state.streams = tuple(streams)
                state.caches = [self._new_state(stream) for stream in streams]
            else:
                if not torch.equal(parents, torch.arange(len(parents), device=parents.device)):
                    for cache in state.caches:
                        if isinstance(cache, StaticDecoder):
                            cache.select_rows(parents)
                        else:
                            cache.batch_select_indices(parents)
                    state.mask = state.mask[parents]
                position_ids = state.mask.sum(-1, keepdim=True)
                mask = torch.cat([state.mask, state.mask.new_ones((len(input_ids), 1))], dim=-1)
                new_tokens = input_ids[:, -1:]
            state.input_ids, state.mask = input_ids.clone(), mask

            logits = []
            for stream, cache in zip(streams, state.caches):
                if isinstance(cache, StaticDecoder):
                    if parents is None or not cache.has_room():  # a new generation, or a full bucket: prefill
                        stream_logits = cache.prefill(input_ids, mask)
                    else:
                        stream_logits = cache.step(new_tokens)
                    logits += stream_logits.to(device).chunk(stream.outputs)
                    continue
                inputs = {"input_ids": new_tokens, "attention_mask": mask, "position_ids": position_ids}
                inputs = {
                    name: tensor.to(stream.model.device).repeat(stream.outputs, 1) for name, tensor in inputs.items()
                }
                with rows_of(stream, cache, len(input_ids)):
                    outputs = stream.model(**inputs, **{stream.cache_kwarg(): cache}, use_cache=True, logits_to_keep=1)
                logits += outputs.logits[:, -1].to(device).chunk(stream.outputs)
        if self._owner != thread:  # another thread took over during this call: this generation's state is gone
            self._interrupted.pop(thread, None)
            raise RuntimeError(CONCURRENT_GENERATIONS)
        return [tensor.clone() for tensor in logits]  # ordinary tensors again, for the processors that follow

    def _new_state(self, stream: Stream) -> GroupedCache | StaticDecoder:
        """An empty cache for `stream`, or with `compile_config` its fixed-shape decoder (filled at the prefill)."""
        if self.compile_config is None:
            return new_cache(stream)
        if stream.with_base and not row_maskable(stream.model):
            raise ValueError(
                "A LoRA doctor with `modules_to_save`, an embedding adapter or a variant such as DoRA cannot share one "
                "fixed-shape forward with its base: run its base as a stream of its own (`Stream(base_only=True)`)."
            )
        return StaticDecoder(stream, self.compile_config)

    def _take_over(self, thread: int, input_ids: torch.LongTensor) -> GenerationState:
        """Give `thread` a fresh state, interrupting the current owner's generation; refuse a call that continues a
        generation of `thread` that another thread interrupted."""
        with self._ownership:
            interrupted = self._interrupted.pop(thread, None)
            if interrupted is not None and _continues(input_ids, interrupted):
                raise RuntimeError(CONCURRENT_GENERATIONS)
            self._interrupt_owner()
            self._owner, self._state = thread, GenerationState()
            return self._state

    def _interrupt_owner(self) -> None:
        """Remember where the owner's generation stood, so that its next step can be refused; the records of threads
        that have ended are dropped (a thread per request would otherwise leave one each)."""
        alive = {thread.ident for thread in threading.enumerate()}
        self._interrupted = {thread: ids for thread, ids in self._interrupted.items() if thread in alive}
        if self._owner in alive and self._state.input_ids is not None:
            self._interrupted[self._owner] = self._state.input_ids

    def _check_prefill(self, streams: list[Stream], input_ids: torch.LongTensor) -> None:
        """At a prefill that starts a new generation (not a restart of the current one), refuse a mask left over
        from an earlier generation and token ids outside a stream's vocabulary."""
        if self._state.input_ids is not None and self._parents(input_ids) is not None:
            return  # the same generation, restarted (the active doctors changed): its mask still applies
        if self._attention_mask is not None and not self._mask_is_new:
            raise ValueError(
                "The attention mask given to this processor belongs to an earlier `generate` call: call "
                "`set_attention_mask(inputs['attention_mask'])` before each `generate` call (or give no mask at all, "
                "and padding is inferred from the pad token)."
            )
        self._mask_is_new = False
        largest = int(input_ids.max())
        for stream in streams:
            vocab_size = stream.model.get_input_embeddings().num_embeddings
            if largest >= vocab_size:
                name = getattr(stream.model, "name_or_path", "") or type(stream.model).__name__
                raise ValueError(
                    f"The prompts hold token id {largest}, outside the vocabulary of {name!r} ({vocab_size} ids): the "
                    "doctor and the patient must share one tokenizer (check `tokenizer=` and the doctor you loaded)."
                )

    def _parents(self, input_ids: torch.LongTensor) -> torch.LongTensor | None:
        """For each row of `input_ids`, the index of the previous call's row that it extends by one token, or `None`
        if `input_ids` does not continue the previous call (a new generation)."""
        previous = self._state.input_ids
        if previous is None or input_ids.shape != (previous.shape[0], previous.shape[1] + 1):
            return None
        prefix = input_ids[:, :-1]
        if torch.equal(prefix, previous):
            return torch.arange(len(prefix), device=prefix.device)
        # Any earlier row with the same tokens has the same state, except that with a given mask two prompts can share
        # tokens but not padding: then the parent must come from the row's own group (`generate` keeps the rows it
        # makes from one prompt together). Without a mask, padding follows from the tokens.
        same = (prefix[:, None] == previous[None]).all(-1)
        groups = torch.arange(len(prefix), device=prefix.device) // self._state.group_size
        same &= groups[:, None] == groups[None]
        if not same.any(-1).all():
            return None
        return same.int().argmax(-1)

    def _prompt_attention_mask(self, state: GenerationState, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Attention mask of shape `(batch_size, prompt_length)` for the prompts in `input_ids`; sets the number of
        rows `generate` made from one prompt in `state`."""
        if self.attention_mask is not None:
            mask = self.attention_mask.to(input_ids.device).long()
            if mask.shape[-1] > input_ids.shape[-1] or len(input_ids) % len(mask):
                raise ValueError(
                    f"The attention mask has shape {tuple(mask.shape)}, which does not fit prompts of shape "
                    f"{tuple(input_ids.shape)}: call `set_attention_mask` with the mask of this `generate` call."
                )
            state.group_size = len(input_ids) // len(mask)
            generated = input_ids.shape[-1] - mask.shape[-1]  # tokens generated before a reset (`set_betas`)
            mask = torch.nn.functional.pad(mask, (0, generated), value=1)
            return mask.repeat_interleave(state.group_size, dim=0)
        state.group_size = len(input_ids)
        if self.pad_token_id is None:
            return torch.ones_like(input_ids)
        return ((input_ids != self.pad_token_id).cumsum(-1) > 0).long()


def new_cache(stream: Stream) -> GroupedCache:
    """An empty cache for `stream`: one group of rows per output, reordered together."""
    cache = GroupedCache(config=stream.model.config)
    cache.groups = stream.outputs
    return cache


def rows_of(stream: Stream, cache: GroupedCache, rows: int):
    """The context that makes `stream.model` compute what the stream asks of it, on `rows` rows per output. A LoRA
    model's rows and its base's share one forward through `RowMask`s (the adapter's delta zeroed on the base's rows,
    no per-row routing) when its adapter allows (`row_maskable`), through PEFT's per-row adapter names otherwise."""
    if not stream.with_base:
        return adapter_disabled(stream.model) if stream.base_only else nullcontext()
    adapter = mixed_batch_adapter(stream.model)
    if cache.row_maskable is None:
        cache.row_maskable = row_maskable(stream.model)
    if not cache.row_maskable:
        return rows_by_adapter(stream.model, [adapter, BASE_ROWS])
    masked_rows = len(next(iter(cache.row_masks.values())).row_weights) // 2 if cache.row_masks else None
    if masked_rows != rows:  # a new generation, or requests that joined or left (serving)
        cache.row_masks = make_row_masks(stream.model, adapter, rows, stream.model.device)
    return adapter_rows_masked(stream.model, adapter, cache.row_masks)


CONCURRENT_GENERATIONS = (
    "Another thread started a generation with this processor while this thread's generation was going on: one "
    "instance holds the caches of one generation at a time, and generations running at once would mix them. Make "
    "one processor per concurrent generation (generations one after the other may share one, in any threads)."
)


def _continues(input_ids: torch.LongTensor, previous: torch.LongTensor) -> bool:
    """Whether each row of `input_ids` extends some row of `previous` by one token (a later step of the same
    generation, beams reordered or not)."""
    if input_ids.shape != (previous.shape[0], previous.shape[1] + 1):
        return False
    prefix = input_ids[:, :-1].to(previous.device)
    return bool((prefix[:, None] == previous[None]).all(-1).any(-1).all())
