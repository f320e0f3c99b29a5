"""A causal LM's next-token log-probabilities after token paths that all follow one prompt: what `TextPrefixModel`
asks of a doctor, with the prompt and the path decoded so far run once."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from transformers import PreTrainedModel

from ..guidance.cached_forward import cache_kwarg
from ..utils.adapters import adapter_disabled


class PromptedPaths:
    """`NextTokenLogprobs` of `model` after `prompt_ids`: the KV cache of the prompt and of a *committed* path (the
    part of every path asked for that decoding has settled, see `commit`) is kept, and each batch of paths runs only
    its tokens past the committed path, over a copy of that cache (left padded after it, the padding masked).

    Args:
        model: a causal LM (eval mode).
        prompt_ids: the prompt's ids, in the model's own tokenizer and chat template (at least one id).
        batch_size: paths per forward.
        base_only: compute with the model's PEFT adapter switched off (the doctor's initial weights, its reference).

    Returns (when called with `paths`, each starting with the committed path): float32 log-probabilities of shape
    `(len(paths), vocab)`.
    """

    def __init__(
        self, model: PreTrainedModel, prompt_ids: Sequence[int], batch_size: int = 32, base_only: bool = False
    ) -> None:
        if not prompt_ids:
            raise ValueError("PromptedPaths needs a prompt of at least one token (the model's chat template).")
        self.model = model
        self.prompt_length = len(prompt_ids)
        self.batch_size = batch_size
        self.base_only = base_only
        self._cache_name = cache_kwarg(model)
        self.committed: tuple[int, ...] = ()
        with torch.inference_mode(), self._weights():
            output = model(
                input_ids=torch.tensor([list(prompt_ids)], device=model.device), use_cache=True, logits_to_keep=1
            )
        # the cache the model returns (named `cache` in later transformers 5.x); later forwards extend it in place
        self._cache = output["cache"] if "cache" in output else output.past_key_values
        self._after_committed = output.logits[0, -1].float().log_softmax(-1)

    def _weights(self):
        """The weights to compute with: the model's, or its base's (adapter off)."""
        return adapter_disabled(self.model) if self.base_only else nullcontext()

    def copy(self) -> PromptedPaths:
        """An independent copy (its own cache), for a second path that branches off this one (beam search)."""
        twin = copy.copy(self)
        twin._cache = copy.deepcopy(self._cache)
        return twin

    @torch.inference_mode()
    def commit(self, path: Sequence[int]) -> None:
        """Settle `path`, which extends the committed path: its tokens join the kept cache, so later paths starting
        with it run only what follows."""
        path = tuple(path)
        if path[: len(self.committed)] != self.committed:
            raise ValueError(f"Path {path} does not extend the committed path {self.committed}.")
        new_tokens = list(path[len(self.committed) :])
        if new_tokens:
            with self._weights():
                output = self.model(
                    input_ids=torch.tensor([new_tokens], device=self.model.device),
                    **{self._cache_name: self._cache},
                    use_cache=True,
                    logits_to_keep=1,
                )
            self._after_committed = output.logits[0, -1].float().log_softmax(-1)
        self.committed = path

    @torch.inference_mode()
    def __call__(self, paths: Sequence[tuple[int, ...]]) -> torch.Tensor:
        suffixes = []
        for path in paths:
            if tuple(path[: len(self.committed)]) != self.committed:
                raise ValueError(f"Path {tuple(path)} does not start with the committed path {self.committed}.")
            suffixes.append(list(path[len(self.committed) :]))
        rows = []
        for start in range(0, len(suffixes), self.batch_size):
            rows.append(self._batch(suffixes[start : start + self.batch_size]))
        return torch.cat(rows) if rows else self._after_committed.new_zeros(0, self._after_committed.shape[-1])

    def _batch(self, suffixes: list[list[int]]) -> torch.Tensor:
        """(len(suffixes), vocab) log-probabilities after the committed path and each suffix, in one forward. The
        suffixes are left padded after the kept cache (masked, positions counted without the padding), so every
        row's last token is the batch's last position."""
        lengths = torch.tensor([len(suffix) for suffix in suffixes])
        width = int(lengths.max())
        if width == 0:
            return self._after_committed.expand(len(suffixes), -1)
        device = self.model.device
        input_ids = torch.tensor([[0] * (width - len(suffix)) + suffix for suffix in suffixes], device=device)
        past_length = self.prompt_length + len(self.committed)
        suffix_mask = torch.arange(width) >= (width - lengths)[:, None]
        attention_mask = torch.cat([torch.ones(len(suffixes), past_length, dtype=torch.long), suffix_mask], dim=1)
        position_ids = past_length + (suffix_mask.long().cumsum(1) - 1).clamp(min=0)
        cache = copy.deepcopy(self._cache)
        cache.batch_repeat_interleave(len(suffixes))
        with self._weights():
            logits = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask.to(device),
                position_ids=position_ids.to(device),
                **{self._cache_name: cache},
                logits_to_keep=1,  # the last position's logits only: each row's last token is there
            ).logits
        last = logits[:, -1].float().log_softmax(-1)
        empty = (lengths == 0).to(device)[:, None]
        return torch.where(empty, self._after_committed, last)
