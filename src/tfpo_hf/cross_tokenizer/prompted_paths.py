"""A causal LM's next-token log-probabilities after token paths that all follow one prompt: what `TextPrefixModel`
asks of a doctor, with the prompt run once."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel


class PromptedPaths:
    """`NextTokenLogprobs` of `model` after `prompt_ids`: the prompt's KV cache is computed at construction, then each
    batch of paths runs over a copy of it, right padded (padding comes after every real position, so it changes
    nothing they see).

    Args:
        model: a causal LM (eval mode).
        prompt_ids: the prompt's ids, in the model's own tokenizer and chat template (at least one id).
        batch_size: paths per forward.

    Returns (when called with `paths`): float32 log-probabilities of shape `(len(paths), vocab)`.
    """

    def __init__(self, model: PreTrainedModel, prompt_ids: Sequence[int], batch_size: int = 32) -> None:
        if not prompt_ids:
            raise ValueError("PromptedPaths needs a prompt of at least one token (the model's chat template).")
        self.model = model
        self.prompt_length = len(prompt_ids)
        self.batch_size = batch_size
        # transformers renamed `past_key_values` to `cache` during 5.x: the name this model's forward takes
        parameters = inspect.signature(type(model).forward).parameters
        self._cache_name = "past_key_values" if "past_key_values" in parameters else "cache"
        device = model.device
        with torch.inference_mode():
            output = model(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True)
        self._prompt_cache = output.past_key_values
        self._after_prompt = output.logits[0, -1].float().log_softmax(-1)

    @torch.inference_mode()
    def __call__(self, paths: Sequence[tuple[int, ...]]) -> torch.Tensor:
        rows = []
        for start in range(0, len(paths), self.batch_size):
            rows.append(self._batch([list(path) for path in paths[start : start + self.batch_size]]))
        return torch.cat(rows) if rows else self._after_prompt.new_zeros(0, self._after_prompt.shape[-1])

    def _batch(self, paths: list[list[int]]) -> torch.Tensor:
        """(len(paths), vocab) log-probabilities after each path of one forward."""
        lengths = torch.tensor([len(path) for path in paths])
        width = int(lengths.max())
        if width == 0:
            return self._after_prompt.expand(len(paths), -1)
        device = self.model.device
        input_ids = torch.tensor([path + [0] * (width - len(path)) for path in paths], device=device)
        attention_mask = torch.cat(
            [torch.ones(len(paths), self.prompt_length, dtype=torch.long), torch.arange(width) < lengths[:, None]],
            dim=1,
        ).to(device)
        cache = copy.deepcopy(self._prompt_cache)
        cache.batch_repeat_interleave(len(paths))
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **{self._cache_name: cache}).logits
        last = logits[torch.arange(len(paths)), (lengths - 1).clamp(min=0).to(device)].float().log_softmax(-1)
        empty = (lengths == 0).to(device)[:, None]
        return torch.where(empty, self._after_prompt, last)
