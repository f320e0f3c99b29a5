"""Guidance between models of one family whose LM heads have different widths over one tokenizer (Qwen2.5-7B's head
has 152,064 rows, Qwen2.5-3B's 151,936, for 151,665 tokens; the extra rows are padding, never tokens).

What `DoctorLogitsProcessor` promises, and these tests check: with `tokenizer`, every log-softmax (the patient's, each
doctor's and each reference's) runs over the tokenizer's ids only, and the columns at or beyond `len(tokenizer)` are
`-inf`, whichever model is wider; so padding rows, even ones that take probability mass, change nothing and are never
generated. Without `tokenizer` the processor cannot tell padding from tokens: the patient's log-softmax runs over its
whole width and a doctor's over its own width cut to the patient's (what the reference loop `mix` computes).

The padded models here are the tiny models with their heads widened to `NARROW` or `WIDE` rows, whose padding rows
are copies of real rows, scaled so they would win a greedy step if they were not masked.
"""

import copy
import math

import pytest
import torch

from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.generation import ATOL, PROMPTS, encode, generate
from ..helpers.reference_guidance import ReferenceGuidanceProcessor, last_logits, mix


TOKENS = 259  # len(tiny_tokenizer())
NARROW, WIDE = 272, 288  # LM-head widths of one family's models: 13 and 29 padding rows
WIDTHS = [(NARROW, WIDE), (WIDE, NARROW), (TOKENS, WIDE), (WIDE, TOKENS)]  # (patient, doctor)


def padded(model: torch.nn.Module, width: int) -> torch.nn.Module:
    """A copy of `model` (a `TOKENS`-wide causal LM) whose LM head has `width` rows: the first `TOKENS` unchanged, the
    padding rows 3x copies of the first real rows, so they take most of the probability mass."""
    model = copy.deepcopy(model)
    if width > TOKENS:
        model.resize_token_embeddings(width, mean_resizing=False)
        with torch.no_grad():
            head = model.get_output_embeddings().weight
            head[TOKENS:] = 3 * head[: width - TOKENS]
    return model


def real_logps(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax `(batch, TOKENS)` of logits `(batch, width)` over the tokenizer's ids only."""
    return torch.log_softmax(logits[:, :TOKENS].float(), dim=-1)


def by_hand(patient_logits, doctor_logits, reference_logits, beta: float, alpha: float = 1.0) -> torch.Tensor:
    """`alpha * log p_patient + beta * [log p_doctor - log p_reference]` `(batch, patient width)`, each log-softmax over
    the tokenizer's ids (`reference_logits` `None`: no reference), the padding columns `-inf`."""
    mixed = alpha * real_logps(patient_logits) + beta * real_logps(doctor_logits)
    if reference_logits is not None:
        mixed = mixed - beta * real_logps(reference_logits)
    return torch.nn.functional.pad(mixed, (0, patient_logits.shape[-1] - TOKENS), value=-math.inf)


@pytest.fixture(scope="module")
def doctor():
    return tiny_causal_lm(seed=1, logit_scale=5.0)


@pytest.fixture(scope="module")
def inputs(tokenizer):
    return encode(tokenizer, PROMPTS[:2])


@pytest.mark.parametrize("patient_width, doctor_width", WIDTHS)
@pytest.mark.parametrize("reference", ["none", "patient", "initial", "model"])
def test_guided_scores_are_the_mix_over_the_tokenizer_ids(
    patient, doctor, tokenizer, inputs, patient_width, doctor_width, reference
):
    patient_lm = padded(patient, patient_width)
    ids, mask = inputs.input_ids, inputs.attention_mask
    scores = last_logits(patient_lm, ids, mask)
    if reference == "initial":  # a LoRA doctor against its own base: one forward of adapter rows and base rows
        doctor_lm = tiny_lora_doctor(padded(doctor, doctor_width), seed=1)
        with doctor_lm.disable_adapter():
            reference_logits = last_logits(doctor_lm, ids, mask)
    else:
        doctor_lm = padded(doctor, doctor_width)
        reference_lm = padded(tiny_causal_lm(seed=2, logit_scale=5.0), WIDE)  # a third width
        reference_logits = {"none": None, "patient": scores, "model": last_logits(reference_lm, ids, mask)}[reference]
    processor = DoctorLogitsProcessor(
        doctor_lm,
        betas=1.5,
        alpha=0.5,
        tokenizer=tokenizer,
        attention_mask=mask,
        references=reference_lm if reference == "model" else reference,
    )
    with torch.inference_mode():
        mixed = processor(ids, scores)
    expected = by_hand(scores, last_logits(doctor_lm, ids, mask), reference_logits, beta=1.5, alpha=0.5)
    assert mixed.shape == (2, patient_width)
    assert torch.isneginf(mixed[:, TOKENS:]).all()
    assert torch.allclose(mixed[:, :TOKENS], expected[:, :TOKENS], atol=ATOL, rtol=0)


@pytest.mark.parametrize("patient_width, doctor_width", WIDTHS)
def test_padding_rows_change_nothing_and_are_never_generated(
    patient, doctor, tokenizer, inputs, patient_width, doctor_width
):
    # the padded pair, guided over the tokenizer's ids, against the unpadded pair in the cache-free reference loop
    processor = DoctorLogitsProcessor(
        padded(doctor, doctor_width), betas=1.0, tokenizer=tokenizer, attention_mask=inputs.attention_mask
    )
    tokens, scores = generate(padded(patient, patient_width), inputs, processor, with_scores=True)
    loop = ReferenceGuidanceProcessor([doctor], betas=[1.0], attention_mask=inputs.attention_mask)
    loop_tokens, loop_scores = generate(patient, inputs, loop, with_scores=True)
    assert tokens.max() < TOKENS
    assert torch.equal(tokens, loop_tokens)
    assert torch.isneginf(scores[..., TOKENS:]).all()
    assert torch.allclose(scores[..., :TOKENS], loop_scores, atol=ATOL, rtol=0)


def test_unguided_padding_would_win(patient, doctor, tokenizer, inputs):
    # the padded models would emit padding ids: what the masking above prevents
    assert (generate(padded(patient, WIDE), inputs) >= TOKENS).any()
    unmasked = DoctorLogitsProcessor(padded(doctor, WIDE), betas=1.0, attention_mask=inputs.attention_mask)
    assert (generate(padded(patient, NARROW), inputs, unmasked) >= TOKENS).any()


@pytest.mark.parametrize("patient_width, doctor_width", WIDTHS)
def test_without_a_tokenizer_the_shared_width_is_guided(patient, doctor, inputs, patient_width, doctor_width):
    # no tokenizer: padding is not known; the columns beyond the doctor's width are -inf, the rest is the loop's mix
    patient_lm, doctor_lm = padded(patient, patient_width), padded(doctor, doctor_width)
    processor = DoctorLogitsProcessor(doctor_lm, betas=1.0, attention_mask=inputs.attention_mask)
    ids, mask = inputs.input_ids, inputs.attention_mask
    scores = last_logits(patient_lm, ids, mask)
    with torch.inference_mode():
        mixed = processor(ids, scores)
    expected = mix(scores, [last_logits(doctor_lm, ids, mask)], [1.0], 1.0)
    shared = min(patient_width, doctor_width)
    assert torch.isneginf(mixed[:, shared:]).all()
    assert torch.allclose(mixed[:, :shared], expected[:, :shared], atol=ATOL, rtol=0)


def test_normalized_scores_are_log_probabilities_over_the_tokenizer_ids(patient, doctor, tokenizer, inputs):
    processor = DoctorLogitsProcessor(
        padded(doctor, NARROW), betas=1.0, tokenizer=tokenizer, attention_mask=inputs.attention_mask, normalize=True
    )
    with torch.inference_mode():
        mixed = processor(
            inputs.input_ids, last_logits(padded(patient, WIDE), inputs.input_ids, inputs.attention_mask)
        )
    assert torch.isneginf(mixed[:, TOKENS:]).all()
    assert torch.allclose(mixed.logsumexp(-1), torch.zeros(2), atol=1e-5)


def test_a_doctor_or_reference_narrower_than_the_tokenizer_is_refused(doctor, tokenizer):
    narrow = tiny_causal_lm(vocab_size=200, seed=1)
    with pytest.raises(ValueError, match=r"200 vocabulary ids, fewer than the 259 tokens.*model family"):
        DoctorLogitsProcessor(narrow, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"200 vocabulary ids, fewer than the 259 tokens"):
        DoctorLogitsProcessor(padded(doctor, WIDE), tokenizer=tokenizer, references=narrow)


def test_a_wider_doctor_saved_with_another_tokenizer_is_read_as_text(doctor, tokenizer, tmp_path):
    padded(doctor, WIDE).save_pretrained(tmp_path)
    other = tiny_tokenizer()
    other.add_tokens(["<extra>"])
    other.save_pretrained(tmp_path)
    processor = DoctorLogitsProcessor(str(tmp_path), tokenizer=tokenizer, references="none")
    assert processor.guided_top_k == 10  # the candidates of a doctor read as text
    with pytest.raises(ValueError, match="reads the conversation in its own chat template"):
        processor(tokenizer(["Hi"], return_tensors="pt").input_ids, torch.zeros(1, 259))
