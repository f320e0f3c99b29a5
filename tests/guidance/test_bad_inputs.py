"""Bad or hostile input to stage 3 (`DoctorLogitsProcessor`, `GuidedModel`): weights, vocabularies, NaN logits and
attention masks; each case asserts the exception and the key words of its message (the problem and the fix), or the
warning, or that the input works and gives the right result."""

import copy
import math

import pytest
import torch
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor, GuidedModel
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor


# ---------------------------------------------------------------------------------------------- the processor
def prompts(tokenizer, texts=("Tell me about cats.", "Hi!")):
    return tokenizer(list(texts), padding=True, return_tensors="pt")


@pytest.mark.parametrize("betas", [math.nan, math.inf, -math.inf, "2", True, None, [1.0, math.nan]])
def test_processor_weights_must_be_finite_real_numbers(betas):
    doctors = [tiny_causal_lm(seed=1), tiny_causal_lm(seed=2)]
    if betas is None:
        with pytest.raises(ValueError, match="alpha must be a finite real number"):
            DoctorLogitsProcessor(doctors, betas=1.0, alpha=math.nan)
        return
    with pytest.raises(ValueError, match="must be a finite real number"):
        DoctorLogitsProcessor(doctors, betas=betas)


def test_processor_wrong_number_of_betas_says_one_or_one_per_doctor():
    with pytest.raises(ValueError, match="one beta, or one per doctor"):
        DoctorLogitsProcessor([tiny_causal_lm(seed=1)], betas=[1.0, 2.0])


def test_processor_set_betas_refuses_nan_and_keeps_the_old_weights():
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0)
    with pytest.raises(ValueError, match="finite"):
        processor.set_betas(float("nan"))
    assert processor.betas == [1.0]


def test_doctor_with_nan_logits_raises_naming_doctor_and_step(patient, tokenizer):
    broken = tiny_causal_lm(seed=1)
    with torch.no_grad():
        broken.lm_head.weight[7] = math.nan
    processor = DoctorLogitsProcessor(broken, betas=1.0, tokenizer=tokenizer)
    inputs = prompts(tokenizer)
    with pytest.raises(ValueError, match=r"NaN or \+inf logits at sequence length"):
        patient.generate(
            **inputs,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )


def test_prompt_ids_outside_the_doctors_vocabulary_raise_at_the_first_call(patient):
    small = tiny_causal_lm(vocab_size=50, seed=1)
    processor = DoctorLogitsProcessor(small, betas=1.0, pad_token_id=2)
    input_ids = torch.tensor([[3, 120, 7]])
    with pytest.raises(ValueError, match="token id 120, outside the vocabulary"):
        patient.generate(
            input_ids,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=2,
        )


def test_a_mask_applies_to_one_generation_only(patient, tokenizer):
    first, second = prompts(tokenizer), prompts(tokenizer, ("Why?", "A longer question here"))
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, attention_mask=first["attention_mask"])
    run = dict(
        logits_processor=LogitsProcessorList([processor]),
        max_new_tokens=2,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    patient.generate(**first, **run)
    with pytest.raises(ValueError, match="earlier `generate` call"):
        patient.generate(**second, **run)
    processor.set_attention_mask(second["attention_mask"])
    patient.generate(**second, **run)  # works once the new mask is given


def test_processor_without_a_mask_serves_many_batches(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    for texts in (("a", "bb"), ("ccc",)):
        out = patient.generate(
            **prompts(tokenizer, texts),
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert out.shape[0] == len(texts)


def test_processor_needs_at_least_one_doctor():
    with pytest.raises(ValueError, match="`doctors` is empty"):
        DoctorLogitsProcessor([])


def test_processor_references_count_must_match():
    with pytest.raises(ValueError, match="2 references for 1 doctors"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=["patient", "patient"])


def test_base_reference_needs_a_lora_doctor():
    with pytest.raises(ValueError, match="no PEFT adapter"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references="base")


def test_doctor_smaller_than_the_tokenizer_is_refused(tokenizer):
    with pytest.raises(ValueError, match="fewer than the"):
        DoctorLogitsProcessor(tiny_causal_lm(vocab_size=100, seed=1), tokenizer=tokenizer)


def test_guided_model_refuses_a_full_weight_doctor_and_nan_weights(patient):
    with pytest.raises(ValueError, match="not a LoRA adapter.*DoctorLogitsProcessor"):
        GuidedModel(copy.deepcopy(patient), tiny_causal_lm(seed=1))
    base = copy.deepcopy(patient)
    with pytest.raises(ValueError, match="finite"):
        GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=math.inf)
