"""Tests of `DoctorLogitsProcessor` on tiny random models: the cached fast path against cache-free references.

The patient is a tiny Llama. The main doctor is a tiny GPT-2: its learned absolute position embeddings make wrong
position ids under left padding visible (rotary models only see relative positions). Tiny random models barely read
their prompt, so besides tokens the tests compare the mixed scores of every step, which any wrong cache row, mask or
position changes by far more than the tolerance.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList, TextStreamer, pipeline

from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.generation import ATOL, NEW_TOKENS, PROMPTS, assert_same_generation, encode, generate
from ..helpers.reference_guidance import ReferenceGuidanceProcessor, reference_greedy


@pytest.fixture(scope="module")
def doctor():
    config = GPT2Config(
        vocab_size=259, n_positions=256, n_embd=32, n_layer=2, n_head=4, tie_word_embeddings=False,
        bos_token_id=2, eos_token_id=2, pad_token_id=2,
    )  # fmt: skip
    torch.manual_seed(3)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # sharp next-token distributions, as `tiny_causal_lm` does
    return model


@pytest.fixture(scope="module")
def other_doctor():
    return tiny_causal_lm(hidden_size=48, num_hidden_layers=1, seed=2)


def test_zero_beta_matches_plain_greedy(patient, doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    processor = DoctorLogitsProcessor(doctor, betas=0.0, alpha=1.0, attention_mask=inputs.attention_mask)
    assert torch.equal(generate(patient, inputs, processor), generate(patient, inputs))


def test_identical_doctor_with_half_weights_matches_plain_greedy(patient, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    twin = copy.deepcopy(patient)
    processor = DoctorLogitsProcessor(twin, betas=0.5, alpha=0.5, attention_mask=inputs.attention_mask)
    guided, scores = generate(patient, inputs, processor, with_scores=True)
    plain, plain_scores = generate(patient, inputs, with_scores=True)
    assert torch.equal(guided, plain)
    assert torch.allclose(scores, plain_scores.log_softmax(-1), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "prompts, give_mask",
    [(PROMPTS[:1], True), (PROMPTS, True), (PROMPTS, False)],
    ids=["batch1", "batch4-left-padded-mask", "batch4-left-padded-no-mask"],
)
def test_greedy_matches_cache_free_loop(patient, doctor, tokenizer, prompts, give_mask):
    inputs = encode(tokenizer, prompts)
    processor = DoctorLogitsProcessor(doctor, betas=1.5, attention_mask=inputs.attention_mask if give_mask else None)
    guided = generate(patient, inputs, processor, with_scores=True)
    expected, expected_scores = reference_greedy(
        patient, [doctor], [1.5], 1.0, inputs.input_ids, inputs.attention_mask, NEW_TOKENS
    )
    assert_same_generation(guided, (expected[:, inputs.input_ids.shape[1] :], expected_scores))
    assert not torch.equal(guided[0], generate(patient, inputs))  # the doctor does change the output


@pytest.mark.parametrize("num_return_sequences", [1, 3])
def test_beam_search_matches_reference_processor(patient, doctor, tokenizer, num_return_sequences):
    inputs = encode(tokenizer, PROMPTS[1:])
    kwargs = {"num_beams": 3, "num_return_sequences": num_return_sequences, "with_scores": True}
    processor = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=inputs.attention_mask)
    reference = ReferenceGuidanceProcessor([doctor], [1.0], attention_mask=inputs.attention_mask)
    parents = []
    find_parents = processor._forward._parents
    processor._forward._parents = lambda input_ids: parents.append(find_parents(input_ids)) or parents[-1]
    fast = generate(patient, inputs, processor, **kwargs)
    assert_same_generation(fast, generate(patient, inputs, reference, **kwargs))
    rows = torch.arange(len(inputs.input_ids) * 3)
    assert any(p is not None and not torch.equal(p, rows) for p in parents)  # beams were reordered


@pytest.mark.parametrize("give_mask", [True, False])
def test_parents_are_found_by_tokens_and_prompt(doctor, give_mask):
    """Direct calls whose rows change places between steps, as beams do, against the cache-free reference."""
    prompts = torch.tensor([[2, 2, 1, 40, 41, 42], [2, 2, 1, 40, 41, 42], [2, 1, 50, 51, 52, 53]])
    # With a mask, prompts 0 and 1 share their tokens but not their padding: the leading 2s are real in prompt 1.
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]]) if give_mask else None
    processor = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=mask)
    reference = ReferenceGuidanceProcessor([doctor], [1.0], attention_mask=mask)
    input_ids = prompts.repeat_interleave(2, dim=0)  # two beams per prompt
    steps = [
        [0, 1, 2, 3, 4, 5],
        [1, 0, 3, 2, 5, 4],  # beams swap inside each prompt's group (rows 1 and 2 have equal tokens)
        [1, 1, 2, 2, 4, 4],  # one beam of each group continues twice
    ]
    if not give_mask:
        steps.append([4, 5, 0, 1, 2, 3])  # rows take another prompt's place: its padding goes with them
    for step, parents in enumerate(steps):
        scores = torch.randn(len(input_ids), 259)
        assert torch.allclose(processor(input_ids, scores), reference(input_ids, scores), atol=ATOL, rtol=0), step
        tokens = torch.tensor([60, 61, 60, 61, 62, 63]) + 10 * step
        input_ids = torch.cat([input_ids[parents], tokens[:, None]], dim=-1)
    scores = torch.randn(len(input_ids), 259)
    assert torch.allclose(processor(input_ids, scores), reference(input_ids, scores), atol=ATOL, rtol=0)


def test_batched_equals_per_prompt(patient, doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    processor = DoctorLogitsProcessor(doctor, attention_mask=inputs.attention_mask)
    batched, batched_scores = generate(patient, inputs, processor, with_scores=True)
    for row, prompt in enumerate(PROMPTS):
        single, single_scores = generate(patient, encode(tokenizer, [prompt]), DoctorLogitsProcessor(doctor), True)
        steps = single.shape[1]  # a single prompt stops at its EOS
        assert torch.equal(single[0], batched[row, :steps])
        assert torch.allclose(single_scores[0], batched_scores[row, :steps], atol=ATOL, rtol=0)


def test_sampling_num_return_sequences_matches_reference_processor(patient, doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS[:2])
    kwargs = {"do_sample": True, "num_return_sequences": 3, "temperature": 0.7, "top_k": 20, "with_scores": True}
    outputs = []
    for processor in (
        DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=inputs.attention_mask),
        ReferenceGuidanceProcessor([doctor], [1.0], attention_mask=inputs.attention_mask),
    ):
        torch.manual_seed(123)
        outputs.append(generate(patient, inputs, processor, **kwargs))
    assert outputs[0][0].shape[0] == 6
    assert_same_generation(*outputs)


def test_two_doctors_with_zero_beta_equal_one_doctor(patient, doctor, other_doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    mask = inputs.attention_mask
    two = DoctorLogitsProcessor([doctor, other_doctor], betas=[1.0, 0.0], attention_mask=mask)
    one = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=mask)
    assert_same_generation(generate(patient, inputs, two, True), generate(patient, inputs, one, True))
    both = DoctorLogitsProcessor([doctor, other_doctor], betas=[1.0, 2.0], attention_mask=mask)
    reference = ReferenceGuidanceProcessor([doctor, other_doctor], [1.0, 2.0], attention_mask=mask)
    assert_same_generation(generate(patient, inputs, both, True), generate(patient, inputs, reference, True))
    with pytest.raises(ValueError, match="3 betas for 2 doctors"):
        DoctorLogitsProcessor([doctor, other_doctor], betas=[1.0, 0.0, 1.0])


def test_set_betas_changes_output_without_new_processor(patient, doctor, other_doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    mask = inputs.attention_mask
    processor = DoctorLogitsProcessor(doctor, betas=0.0, attention_mask=mask)
    assert torch.equal(generate(patient, inputs, processor), generate(patient, inputs))
    processor.set_betas(2.0)
    steered = generate(patient, inputs, processor)
    assert torch.equal(steered, generate(patient, inputs, DoctorLogitsProcessor(doctor, 2.0, attention_mask=mask)))
    assert not torch.equal(steered, generate(patient, inputs))

    # Between two steps of one generation, switching a doctor on and off.
    processor = DoctorLogitsProcessor([doctor, other_doctor], betas=[1.0, 0.0], attention_mask=mask)
    input_ids = inputs.input_ids
    for step, betas in enumerate([[1.0, 0.0], [1.0, 2.0], [1.0, 2.0], [0.0, 2.0], [1.0, 2.0]]):
        processor.set_betas(betas)
        scores = torch.randn(len(input_ids), 259)
        expected = ReferenceGuidanceProcessor([doctor, other_doctor], betas, attention_mask=mask)(input_ids, scores)
        assert torch.allclose(processor(input_ids, scores), expected, atol=ATOL, rtol=0), step
        input_ids = torch.cat([input_ids, expected.argmax(-1, keepdim=True)], dim=-1)


def test_reused_processor_equals_fresh_processor(patient, doctor, tokenizer):
    first, second = encode(tokenizer, PROMPTS), encode(tokenizer, PROMPTS[2:])
    processor = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=first.attention_mask)
    generate(patient, first, processor)
    processor.set_attention_mask(second.attention_mask)
    fresh = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=second.attention_mask)
    assert_same_generation(generate(patient, second, processor, True), generate(patient, second, fresh, True))

    # Same batch size, and a length of exactly the previous one plus one: only the rows tell a new call apart.
    processor = DoctorLogitsProcessor(doctor, betas=1.0)
    generate(patient, second, processor, max_new_tokens=1)
    third = encode(tokenizer, ["Hey", "Hm"])
    pad = second.input_ids.shape[1] + 1 - third.input_ids.shape[1]
    third = {
        "input_ids": torch.nn.functional.pad(third.input_ids, (pad, 0), value=2),
        "attention_mask": torch.nn.functional.pad(third.attention_mask, (pad, 0), value=0),
    }
    fresh = DoctorLogitsProcessor(doctor, betas=1.0)
    assert_same_generation(generate(patient, third, processor, True), generate(patient, third, fresh, True))


def test_zero_weight_and_inf_never_give_nan(doctor):
    input_ids = torch.tensor([[1, 40, 41, 42], [1, 50, 51, 52]])
    scores = torch.randn(2, 259)
    scores[0, :100] = float("-inf")
    scores[1] = float("-inf")  # a row another processor masked entirely

    doctor_only = DoctorLogitsProcessor(doctor, betas=1.0, alpha=0.0)(input_ids, scores)
    assert torch.isfinite(doctor_only).all()  # the patient's -inf weigh nothing

    patient_only = DoctorLogitsProcessor(doctor, betas=0.0, alpha=1.0)(input_ids, scores)
    assert torch.equal(patient_only, scores)  # every beta 0 and alpha 1: passed through untouched
    half_patient = DoctorLogitsProcessor(doctor, betas=0.0, alpha=0.5)(input_ids, scores)
    assert not half_patient.isnan().any()
    assert (
        torch.allclose(half_patient[0], 0.5 * torch.log_softmax(scores[0], -1))
        and torch.isneginf(half_patient[1]).all()
    )

    masked_doctor = copy.deepcopy(doctor)
    original_forward = masked_doctor.forward

    def forward(*args, **kwargs):
        outputs = original_forward(*args, **kwargs)
        outputs.logits[..., 7] = float("-inf")  # a doctor that rules token 7 out
        return outputs

    masked_doctor.forward = forward
    scores = torch.randn(2, 259)
    for betas, alpha in [([0.0, 1.0], 1.0), ([-0.5, 1.0], 1.0), ([1.0, 1.0], 0.0)]:
        for normalize in (False, True):
            processor = DoctorLogitsProcessor([masked_doctor, doctor], betas=betas, alpha=alpha, normalize=normalize)
            mixed = processor(input_ids, scores)
            assert not mixed.isnan().any() and not torch.isposinf(mixed).any()
            assert torch.isneginf(mixed[:, 7]).all() == (betas[0] != 0)
            assert torch.isfinite(mixed[:, 8:]).all()
            if normalize:
                assert torch.allclose(mixed.logsumexp(-1), torch.zeros(2), atol=1e-5)


def test_padded_vocabularies(patient, doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    padded = copy.deepcopy(doctor)
    padded.resize_token_embeddings(320, mean_resizing=False)
    with torch.no_grad():
        padded.lm_head.weight[259:] = 3 * padded.lm_head.weight[:61]  # padding rows that take probability mass
    processor = DoctorLogitsProcessor(padded, betas=1.0, tokenizer=tokenizer, attention_mask=inputs.attention_mask)
    unpadded = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=inputs.attention_mask)
    assert_same_generation(generate(patient, inputs, processor, True), generate(patient, inputs, unpadded, True))

    # A patient whose scores are wider than the doctor's vocabulary: the extra columns are not tokens.
    scores = torch.randn(1, 300)
    mixed = DoctorLogitsProcessor(doctor, betas=1.0)(inputs.input_ids[:1], scores)
    assert mixed.shape == (1, 300) and torch.isneginf(mixed[:, 259:]).all() and torch.isfinite(mixed[:, :259]).all()
    unguided = DoctorLogitsProcessor(doctor, betas=0.0)(inputs.input_ids[:1], scores)
    assert torch.equal(unguided, scores)


def test_vocabulary_mismatch_is_an_error(doctor, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="fewer than the 259 tokens"):
        DoctorLogitsProcessor(tiny_causal_lm(vocab_size=200), tokenizer=tokenizer)

    doctor.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    DoctorLogitsProcessor(str(tmp_path), tokenizer=tokenizer)  # same tokenizer: fine
    other = tiny_tokenizer()
    other.add_tokens(["<extra>"])
    other.save_pretrained(tmp_path)
    # another saved tokenizer: the doctor is read as text, by that tokenizer, which its 259 rows cannot hold
    with pytest.raises(ValueError, match=r"259 vocabulary ids, fewer than the 260 tokens of its tokenizer") as error:
        DoctorLogitsProcessor(str(tmp_path), tokenizer=tokenizer)
    assert str(tmp_path) in str(error.value)


def test_doctor_loaded_from_path_or_wrapper(patient, doctor, tokenizer, tmp_path):
    doctor.save_pretrained(tmp_path)
    inputs = encode(tokenizer, PROMPTS)
    from_path = DoctorLogitsProcessor(str(tmp_path), betas=1.0, attention_mask=inputs.attention_mask)
    from_model = DoctorLogitsProcessor(doctor, betas=1.0, attention_mask=inputs.attention_mask)
    assert from_path.doctors[0] is not doctor
    assert DoctorLogitsProcessor(SimpleNamespace(pretrained_model=doctor)).doctors == [doctor]  # a DoctorModel
    assert_same_generation(generate(patient, inputs, from_path, True), generate(patient, inputs, from_model, True))


@pytest.mark.parametrize("num_beams", [1, 3])
def test_one_doctor_forward_per_token(patient, doctor, tokenizer, num_beams):
    counted = copy.deepcopy(doctor)
    calls = []
    original_forward = counted.forward

    def forward(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return original_forward(*args, **kwargs)

    counted.forward = forward
    inputs = encode(tokenizer, PROMPTS)
    processor = DoctorLogitsProcessor(counted, betas=1.0, attention_mask=inputs.attention_mask)
    generate(patient, inputs, processor, num_beams=num_beams, min_new_tokens=NEW_TOKENS)
    rows = len(PROMPTS) * num_beams
    assert calls == [(rows, inputs.input_ids.shape[1])] + [(rows, 1)] * (NEW_TOKENS - 1)


def test_pipeline_and_streamer_match_generate(patient, doctor, tokenizer, capsys):
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[1]}], tokenize=False, add_generation_prompt=True
    )
    expected = generate(patient, tokenizer([text], return_tensors="pt"), DoctorLogitsProcessor(doctor, betas=1.0))
    expected_text = tokenizer.decode(expected[0], skip_special_tokens=True)

    generator = pipeline("text-generation", model=patient, tokenizer=tokenizer, device=patient.device)
    processors = LogitsProcessorList([DoctorLogitsProcessor(doctor, betas=1.0)])
    out = generator(
        text, logits_processor=processors, max_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False
    )
    assert out[0]["generated_text"] == expected_text

    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    capsys.readouterr()
    generate(patient, tokenizer([text], return_tensors="pt"), DoctorLogitsProcessor(doctor, 1.0), streamer=streamer)
    assert capsys.readouterr().out.strip() == expected_text.strip()
