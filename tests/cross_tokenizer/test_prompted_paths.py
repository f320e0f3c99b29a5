import pytest
import torch

from tfpo_hf.cross_tokenizer.prompted_paths import PromptedPaths
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor


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


def test_paths_past_a_committed_path_equal_full_forwards_and_copies_are_independent():
    model = tiny_causal_lm(logit_scale=3.0)
    paths = PromptedPaths(model, PROMPT)
    paths.commit((5,))
    paths.commit((5, 6, 7))
    branch = paths.copy()
    branch.commit((5, 6, 7, 40))
    extensions = [(5, 6, 7), (5, 6, 7, 8), (5, 6, 7, 9, 10, 11)]
    expected = torch.stack([full_forward_logprobs(model, path) for path in extensions])
    torch.testing.assert_close(paths(extensions), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        branch([(5, 6, 7, 40, 2)])[0], full_forward_logprobs(model, (5, 6, 7, 40, 2)), atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="does not start with the committed path"):
        paths([(5, 6)])
    with pytest.raises(ValueError, match="does not extend the committed path"):
        paths.commit((5, 9))


def test_the_base_of_a_lora_model_reads_paths_with_its_adapter_off(saved_patient):
    doctor = tiny_lora_doctor(saved_patient, 7, target_modules=["q_proj", "v_proj"])
    base = PromptedPaths(doctor, PROMPT, base_only=True)
    base.commit((5, 6))
    torch.testing.assert_close(
        base([(5, 6, 7)])[0], full_forward_logprobs(saved_patient, (5, 6, 7)), atol=1e-5, rtol=1e-5
    )
    assert not torch.allclose(PromptedPaths(doctor, PROMPT)([(5, 6, 7)])[0], base([(5, 6, 7)])[0])
