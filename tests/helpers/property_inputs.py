"""What the guidance property tests (hypothesis) share: their settings, and prompts of tiny token ids, left padded
with the tiny models' pad id."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck
from hypothesis import strategies as st


PAD = 2  # the tiny models' pad and EOS id (`<|im_end|>`)
# Derandomized and without a database: the examples are the same on every run.
PROPERTY_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def prompt_tokens(vocab_size: int):
    """Token ids below `vocab_size`, `PAD`, 40 and 41 often."""
    return st.one_of(st.sampled_from([PAD, 40, 41]), st.integers(0, vocab_size - 1))


def prompt_strategy(give_mask: bool, vocab_size: int, max_size: int):
    """Prompts of 1 to `max_size` ids of `prompt_tokens(vocab_size)`. Without a mask a leading run of PAD
    is padding, so a prompt of nothing but PAD would have no real token (and a generated EOS after it would count as
    padding too: the documented case for passing the mask); its last token is then made real."""
    prompt = st.lists(prompt_tokens(vocab_size), min_size=1, max_size=max_size).map(tuple)
    if give_mask:
        return prompt
    return prompt.map(lambda ids: ids if any(t != PAD for t in ids) else (*ids[:-1], 40))


def left_padded(prompts, width: int = 0) -> tuple[torch.LongTensor, torch.LongTensor]:
    """`prompts` (sequences of ids) left padded with `PAD` to their longest (or `width`, if longer), and their
    attention mask; both of shape `(len(prompts), width)`."""
    width = max(width, *(len(prompt) for prompt in prompts))
    input_ids = torch.tensor([[PAD] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return input_ids, mask
