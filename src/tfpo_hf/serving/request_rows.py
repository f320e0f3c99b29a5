"""One model's KV cache over the requests of a serving engine, which join and leave the batch at any step.

`generate()` moves every row in lockstep, so `IncrementalForward` infers what to feed from `input_ids`. A serving
engine (continuous batching) does not: requests arrive with their prompts while others are halfway, finish at
different steps, and are preempted and resumed. `RequestRows` keeps one batched cache whose row r holds the tokens
of request `keys[r]`, left-padded to a common length, and per step runs one forward over all its rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from ..guidance.cached_forward import GroupedCache, Stream, new_cache, rows_of
from ..utils.logps import position_ids_from_mask


class RequestRows:
    """The cache of one `Stream` (a doctor, with its base's rows or not, or a reference model) over a changing set of
    requests, and their latest next-token logits.

    Each call to `logits` gives the next-token logits after every requested token history:

    - a request seen for the first time is prefilled (with the other new ones, left-padded) and its rows appended;
    - a request whose history grew by one token since the last call is fed that token: one forward over the cache's
      rows (rows with nothing new get a masked column);
    - a request whose history did not change gets its last logits again;
    - a request whose history changed otherwise (several tokens at once, or another prefix) is prefilled again, and
      counted in `reprefills`.

    `remove` drops requests that left the batch; columns of left padding that no row uses any more are trimmed.

    Args:
        stream (`Stream`): the model to run, as the processor runs it.
    """

    def __init__(self, stream: Stream):
        self.stream = stream
        self.keys: list[Hashable] = []  # request of each row
        self.histories: list[list[int]] = []  # the tokens each row's cache holds
        self.cache: GroupedCache | None = None
        self.mask: torch.LongTensor | None = None  # (rows, length): which cache columns are tokens
        self.last_logits: list[torch.Tensor] = []  # per output of the stream: (rows, vocab_size)
        self.prefills = 0  # requests prefilled, first time or again
        self.reprefills = 0  # requests prefilled again because their history changed otherwise than by one token

    def __len__(self) -> int:
        return len(self.keys)

    def remove(self, keys: Sequence[Hashable]) -> None:
        """Drop the rows of `keys` (those not held are ignored)."""
        gone = set(keys)
        keep = [row for row, key in enumerate(self.keys) if key not in gone]
        if len(keep) < len(self.keys):
            self._select(keep)

    @torch.inference_mode()
    def logits(self, requests: Sequence[tuple[Hashable, Sequence[int]]]) -> list[torch.Tensor]:
        """Next-token logits after each request's token history.

        Args:
            requests: `(key, token ids so far)` per request, prompt included.

        Return:
            `list[torch.Tensor]`: per output of the stream (the model's, then its base's with `with_base`), logits of
            shape `(len(requests), vocab_size)`, in the order of `requests`, in float32.
        """
        rows = {key: row for row, key in enumerate(self.keys)}
        changed = [
            key
            for key, tokens in requests
            if key in rows
            and not (
                len(tokens) - len(self.histories[rows[key]]) in (0, 1)
                and _starts_with(tokens, self.histories[rows[key]])
            )
        ]
        if changed:
            self.reprefills += len(changed)
            self.remove(changed)
            rows = {key: row for row, key in enumerate(self.keys)}
        new, stepped = [], {}
        for key, tokens in requests:
            row = rows.get(key)
            if row is None:
                new.append((key, list(tokens)))
            elif len(tokens) > len(self.histories[row]):
                stepped[row] = int(tokens[-1])
        if stepped:
            self._step(stepped)
        if new:
            self._prefill(new)
        rows = {key: row for row, key in enumerate(self.keys)}
        order = torch.tensor([rows[key] for key, _ in requests], dtype=torch.long)
        return [logits[order.to(logits.device)] for logits in self.last_logits]

    def _step(self, stepped: dict[int, int]) -> None:
        """Feed one token to each row of `stepped` (row -> token); the other rows get a masked column."""
        device = self.mask.device
        rows = torch.tensor(list(stepped), dtype=torch.long, device=device)
        tokens = torch.zeros(len(self.keys), 1, dtype=torch.long, device=device)
        tokens[rows, 0] = torch.tensor(list(stepped.values()), dtype=torch.long, device=device)
        column = torch.zeros(len(self.keys), 1, dtype=self.mask.dtype, device=device)
        column[rows] = 1
        position_ids = self.mask.sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, column], dim=-1)
        logits = self._forward(tokens, self.mask, position_ids, self.cache)
        for output, fresh in zip(self.last_logits, logits):
            output[rows] = fresh[rows]
        for row, token in stepped.items():
            self.histories[row].append(token)

    def _prefill(self, requests: list[tuple[Hashable, list[int]]]) -> None:
        """Prefill `requests` together (left-padded) and append their rows to the cache."""
        device = self.stream.model.device
        length = max(len(tokens) for _, tokens in requests)
        tokens = torch.zeros(len(requests), length, dtype=torch.long, device=device)
        mask = torch.zeros(len(requests), length, dtype=torch.long, device=device)
        for row, (_, history) in enumerate(requests):
            tokens[row, length - len(history) :] = torch.tensor(history, dtype=torch.long, device=device)
            mask[row, length - len(history) :] = 1
        cache = new_cache(self.stream)
        logits = self._forward(tokens, mask, position_ids_from_mask(mask), cache)
        self.prefills += len(requests)
        self.keys += [key for key, _ in requests]
        self.histories += [history for _, history in requests]
        if self.cache is None:
            self.cache, self.mask, self.last_logits = cache, mask, logits
            return
        shift = self.mask.shape[-1] - mask.shape[-1]
        self.mask = torch.cat([_left_pad(self.mask, -shift, dim=-1), _left_pad(mask, shift, dim=-1)])
        groups = self.stream.outputs
        for held, added in zip(self.cache.layers, cache.layers):
            held.keys = _concat_groups(
                _left_pad(held.keys, -shift, dim=-2), _left_pad(added.keys, shift, dim=-2), groups
            )
            held.values = _concat_groups(
                _left_pad(held.values, -shift, dim=-2), _left_pad(added.values, shift, dim=-2), groups
            )
        self.last_logits = [torch.cat([held, added]) for held, added in zip(self.last_logits, logits)]

    def _select(self, keep: list[int]) -> None:
        """Keep the rows `keep`, then trim the leading columns that none of them uses."""
        self.keys = [self.keys[row] for row in keep]
        self.histories = [self.histories[row] for row in keep]
        if not keep:
            self.cache, self.mask, self.last_logits = None, None, []
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.last_logits = [logits[index.to(logits.device)] for logits in self.last_logits]
        unused = int((self.mask.cumsum(-1) == 0).all(0).sum())
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., unused:, :], layer.values[..., unused:, :]

    def _forward(self, tokens, mask, position_ids, cache) -> list[torch.Tensor]:
        """One forward of the stream's model; its last-position logits per output, in float32."""
        stream = self.stream
        inputs = {"input_ids": tokens, "attention_mask": mask, "position_ids": position_ids}
        inputs = {name: tensor.to(stream.model.device).repeat(stream.outputs, 1) for name, tensor in inputs.items()}
        with rows_of(stream, cache, len(tokens)):
            outputs = stream.model(**inputs, **{stream.cache_kwarg(): cache}, use_cache=True, logits_to_keep=1)
        return [logits.float() for logits in outputs.logits[:, -1].chunk(stream.outputs)]


def _starts_with(tokens: Sequence[int], prefix: list[int]) -> bool:
    return len(tokens) >= len(prefix) and list(tokens[: len(prefix)]) == prefix


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """`tensor` with `width` zeros prepended along `dim` (none when `width <= 0`)."""
    if width <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _concat_groups(held: torch.Tensor, added: torch.Tensor, groups: int) -> torch.Tensor:
    """Rows of `held` and `added` concatenated group by group (a `GroupedCache` keeps each group's rows together)."""
    return torch.cat([part for pair in zip(held.chunk(groups), added.chunk(groups)) for part in pair])
