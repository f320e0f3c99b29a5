"""A doctor's (or reference's) decoding steps at fixed shapes, for `torch.compile` and CUDA graphs.

On a GPU, eager decoding is bound by Python and kernel launches: each extra forward costs about one patient step
whatever its size, so a small doctor is only cheap when its step is captured. `StaticDecoder` keeps a stream in a
transformers `StaticCache` and gives every one-token step the same shapes and no host-side branch on the step's
number, so that the model's compiled call (`PreTrainedModel.get_compiled_call`, what `generate` itself uses with
`cache_implementation="static"`) captures one graph per cache size and replays it:

- the cache holds `CACHE_BUCKET`-token buckets (prompt plus what is generated, rounded up); a generation that
  outgrows its bucket is prefilled again into the next one (one prefill and one new graph per bucket);
- the 2-D attention mask is as long as the cache: the prompts' padding, then ones (the causal mask, built from the
  cache's own write position, hides the slots not written yet), so it never changes during decoding;
- position ids come from a table made at the prefill, `cumsum(mask) - 1`, sliced outside the compiled call;
- a LoRA doctor and its base share one forward through a row mask in place of the adapter's dropout: the adapter's
  delta `B(A(mask * x))` is zero on the base's rows, with no hook and no per-row adapter names (which a capture
  cannot hold);
- beam search reorders the cache in place (the captured graph reads the same buffers).

The prefill runs eagerly, as in `generate`; the arithmetic is that of the dynamic path (`tests/guidance/
test_static_decoding.py` compares the tokens).
"""

from __future__ import annotations

import inspect
import math
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from transformers import StaticCache

from ..utils.adapters import RowMask, adapter_disabled, adapter_rows_masked, make_row_masks, mixed_batch_adapter
from ..utils.logps import position_ids_from_mask


if TYPE_CHECKING:
    from transformers import CompileConfig

    from .cached_forward import Stream

CACHE_BUCKET = 256  # cache slots are allocated in multiples of this many tokens


class StaticDecoder:
    """One stream's decoding state at fixed shapes: its `StaticCache`, the cache-long attention mask and the table of
    position ids, and the compiled call that runs one token per row.

    Args:
        stream (`Stream`): the model to run (with its base's rows when `stream.with_base`, its base alone when
            `stream.base_only`).
        compile_config (`CompileConfig`): how the one-token steps are compiled (`torch.compile` arguments).
    """

    def __init__(self, stream: Stream, compile_config: CompileConfig):
        self.stream = stream
        self.compile_config = compile_config
        self.model = stream.model.get_base_model() if hasattr(stream.model, "get_base_model") else stream.model
        self.takes_cache_position = "cache_position" in inspect.signature(type(self.model).forward).parameters
        self.cache_kwarg = stream.cache_kwarg()
        self.cache: StaticCache | None = None
        self.mask: torch.LongTensor | None = None  # (groups * rows, cache_length): padding zeros, then ones
        self.positions: torch.LongTensor | None = None  # (groups * rows, cache_length): position id of each slot
        self.slots: torch.LongTensor | None = None  # (cache_length,): arange, sliced for `cache_position`
        self.length = 0  # slots written
        self.adapter = mixed_batch_adapter(stream.model) if stream.with_base else None
        self.row_masks: dict[str, RowMask] = {}

    @property
    def cache_length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[-1]

    def prefill(self, input_ids: torch.LongTensor, mask: torch.LongTensor) -> torch.Tensor:
        """Start over: a cache with room for `input_ids` and at least one more token, filled with `input_ids`.

        Args:
            input_ids (`torch.LongTensor` of shape `(rows, length)`): the sequences so far.
            mask (`torch.LongTensor` of shape `(rows, length)`): their attention mask (0 on left padding).

        Return:
            `torch.Tensor` of shape `(groups * rows, vocab_size)`: the next-token logits, each output's rows in turn.
        """
        groups = self.stream.outputs
        rows, length = input_ids.shape
        device = self.model.device
        cache_length = CACHE_BUCKET * math.ceil((length + 1) / CACHE_BUCKET)
        full_mask = torch.nn.functional.pad(mask.to(device), (0, cache_length - length), value=1).repeat(groups, 1)
        self.mask, self.positions = full_mask, position_ids_from_mask(full_mask)
        self.slots = torch.arange(cache_length, device=device)
        self.cache = StaticCache(config=self.model.config, max_cache_len=cache_length)
        self.length = 0
        if self.stream.with_base:
            self.row_masks = make_row_masks(self.model, self.adapter, rows, device)
        return self._forward(self.model.__call__, input_ids.to(device).repeat(groups, 1))

    def step(self, new_tokens: torch.LongTensor) -> torch.Tensor:
        """One token per row through the compiled call; the cache must have a free slot (`has_room`).

        Args:
            new_tokens (`torch.LongTensor` of shape `(rows, 1)`): the token each row just got.

        Return:
            `torch.Tensor` of shape `(groups * rows, vocab_size)`: the next-token logits.
        """
        compiled_call = self.model.get_compiled_call(self.compile_config)
        return self._forward(compiled_call, new_tokens.to(self.model.device).repeat(self.stream.outputs, 1))

    def has_room(self) -> bool:
        return self.length < self.cache_length

    def select_rows(self, indices: torch.LongTensor) -> None:
        """Keep row `indices[i]` as row `i` (beam search), in place: a captured graph reads the same buffers."""
        rows = len(self.mask) // self.stream.outputs
        indices = indices.to(self.mask.device)
        expanded = torch.cat([indices + group * rows for group in range(self.stream.outputs)])
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.keys.copy_(layer.keys.index_select(0, expanded))
                layer.values.copy_(layer.values.index_select(0, expanded))
        self.mask, self.positions = self.mask[expanded], self.positions[expanded]

    def _forward(self, call, input_ids: torch.LongTensor) -> torch.Tensor:
        """Run `input_ids` `(groups * rows, new_length)` into the next slots of the cache."""
        new_length = input_ids.shape[-1]
        window = slice(self.length, self.length + new_length)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": self.mask,
            "position_ids": self.positions[:, window],
            self.cache_kwarg: self.cache,
        }
        if self.takes_cache_position:
            inputs["cache_position"] = self.slots[window]
        with self._rows():
            outputs = call(**inputs, use_cache=True, logits_to_keep=1)
        self.length += new_length
        return outputs.logits[:, -1]

    def _rows(self):
        """The context in which the model computes what the stream asks of it."""
        if self.stream.with_base:
            return adapter_rows_masked(self.model, self.adapter, self.row_masks)
        return adapter_disabled(self.stream.model) if self.stream.base_only else nullcontext()
