import pytest
import torch

from tfpo_hf.cross_tokenizer.prompted_paths import PromptedPaths
from tfpo_hf.testing import tiny_causal_lm


PROMPT = [1, 7, 30, 99]
PATHS = [(), (5,), (5, 6, 7), (200, 3), (), (8, 9, 10, 11, 12)]


def full_forward_logprobs(model, path):
    with torch.no_grad():
        return model(torch.tensor([PROMPT + list(path)])).logits[0, -1].float().log_softmax(-1)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_paths_over_the_cached_prompt_equal_full_forwards(batch_size):
    model = tiny_causal_lm(logit_scale=3.0)
    got = PromptedPaths(model, PROMPT, batch_size=batch_size)(PATHS)
    expected = torch.stack([full_forward_logprobs(model, path) for path in PATHS])
    assert got.shape == (len(PATHS), model.config.vocab_size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_cached_prompt_is_not_changed_by_a_call():
    model = tiny_causal_lm(logit_scale=3.0)
    paths = PromptedPaths(model, PROMPT)
    first = paths([(5, 6)])
    paths([(9, 9, 9, 9)])
    torch.testing.assert_close(paths([(5, 6)]), first)


def test_an_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        PromptedPaths(tiny_causal_lm(), [])
