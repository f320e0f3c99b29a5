"""Ratio guidance (log p_patient + beta * [log p_doctor - log p_ref]) against plain `generate()` and a cache-free loop,
and the decoding defaults a saved doctor records.

The doctor is a LoRA adapter on a copy of the tiny patient. Its reference is given three ways: `"base"` (the same
weights with the adapter disabled), `"patient"` (the patient's own scores), or a separate model; the cache-free
reference loop always gets a separate copy of the base, so disabling the adapter is checked, not assumed.
"""

import copy
import json

import pytest
import torch

from tfpo_hf import DoctorLogitsProcessor, DoctorModel
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor

from ..helpers.generation import ATOL, PROMPTS, assert_same_generation, encode, generate
from ..helpers.reference_guidance import ReferenceGuidanceProcessor


def lora_doctor(base, trained: bool, seed: int = 7, use_dora: bool = False):
    """A LoRA adapter on a copy of `base`: the adapter untouched (equal to its base) or with random weights."""
    return tiny_lora_doctor(
        base, seed if trained else None, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=use_dora
    )


@pytest.fixture(scope="module")
def trained_doctor(saved_patient):
    return lora_doctor(saved_patient, trained=True)


def plain_and_guided(patient, inputs, processor, **kwargs):
    torch.manual_seed(11)
    plain = generate(patient, inputs, None, True, **kwargs)
    torch.manual_seed(11)
    guided = generate(patient, inputs, processor, True, **kwargs)
    return plain, guided


SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 30, "num_return_sequences": 2}
BEAMS = {"num_beams": 3, "num_return_sequences": 2}


@pytest.mark.parametrize("kwargs", [{}, SAMPLING, BEAMS], ids=["greedy", "sampling", "beams"])
@pytest.mark.parametrize("reference", ["base", "patient"])
def test_beta_zero_is_exactly_plain_generate(saved_patient, trained_doctor, tokenizer, kwargs, reference):
    inputs = encode(tokenizer, PROMPTS)
    processor = DoctorLogitsProcessor(
        trained_doctor, betas=0.0, references=reference, attention_mask=inputs.attention_mask
    )
    (plain, plain_scores), (guided, guided_scores) = plain_and_guided(saved_patient, inputs, processor, **kwargs)
    assert torch.equal(plain, guided) and torch.equal(plain_scores, guided_scores)


@pytest.mark.parametrize("kwargs", [{}, SAMPLING, BEAMS], ids=["greedy", "sampling", "beams"])
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_doctor_equal_to_its_reference_is_plain_generate_at_any_beta(saved_patient, tokenizer, kwargs, beta):
    inputs = encode(tokenizer, PROMPTS)
    untrained = lora_doctor(saved_patient, trained=False)  # the adapter adds exactly zero
    for reference in ("base", "patient"):
        processor = DoctorLogitsProcessor(
            untrained, betas=beta, references=reference, attention_mask=inputs.attention_mask
        )
        (plain, plain_scores), (guided, guided_scores) = plain_and_guided(saved_patient, inputs, processor, **kwargs)
        assert torch.equal(plain, guided), reference
        if kwargs is not BEAMS:  # sampling scores are warped logits: compare them as distributions
            plain_scores, guided_scores = plain_scores.log_softmax(-1), guided_scores.log_softmax(-1)
        expected = plain_scores
        finite = torch.isfinite(expected)
        assert torch.equal(finite, torch.isfinite(guided_scores))
        assert torch.allclose(guided_scores[finite], expected[finite], atol=ATOL, rtol=0), reference


@pytest.mark.parametrize("kwargs", [{}, SAMPLING, BEAMS], ids=["greedy", "sampling", "beams"])
def test_ratio_to_base_matches_cache_free_loop(saved_patient, trained_doctor, tokenizer, kwargs):
    inputs = encode(tokenizer, PROMPTS)
    base_copy = copy.deepcopy(saved_patient)  # a separate model: the loop never disables an adapter
    fast = DoctorLogitsProcessor(trained_doctor, betas=2.0, references="base", attention_mask=inputs.attention_mask)
    loop = ReferenceGuidanceProcessor(
        [trained_doctor], [2.0], references=[base_copy], attention_mask=inputs.attention_mask
    )
    (plain, _), (guided, guided_scores) = plain_and_guided(saved_patient, inputs, fast, **kwargs)
    torch.manual_seed(11)
    expected = generate(saved_patient, inputs, loop, True, **kwargs)
    assert_same_generation((guided, guided_scores), expected)
    assert not torch.equal(guided, plain)  # the doctor does steer


def test_ratio_to_patient_is_the_mix_with_alpha_one_minus_beta(saved_patient, trained_doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    mask = inputs.attention_mask
    ratio = DoctorLogitsProcessor(trained_doctor, betas=3.0, references="patient", attention_mask=mask)
    mix = DoctorLogitsProcessor(trained_doctor, betas=3.0, alpha=-2.0, references="none", attention_mask=mask)
    loop = ReferenceGuidanceProcessor([trained_doctor], [3.0], references=["patient"], attention_mask=mask)
    for kwargs in ({}, SAMPLING):
        torch.manual_seed(5)
        expected = generate(saved_patient, inputs, loop, True, **kwargs)
        for processor in (ratio, mix):
            processor.set_attention_mask(mask)  # a mask applies to one generation
            torch.manual_seed(5)
            assert_same_generation(generate(saved_patient, inputs, processor, True, **kwargs), expected)


def test_two_doctors_with_their_own_references_match_the_loop(saved_patient, trained_doctor, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    mask = inputs.attention_mask
    small_doctor = tiny_causal_lm(hidden_size=48, num_hidden_layers=1, seed=2)
    small_reference = tiny_causal_lm(hidden_size=48, num_hidden_layers=1, seed=3)
    fast = DoctorLogitsProcessor(
        [trained_doctor, small_doctor], betas=[1.5, 0.5], references=["base", small_reference], attention_mask=mask
    )
    loop = ReferenceGuidanceProcessor(
        [trained_doctor, small_doctor],
        [1.5, 0.5],
        references=[copy.deepcopy(saved_patient), small_reference],
        attention_mask=mask,
    )
    for kwargs in ({}, BEAMS):
        fast.set_attention_mask(mask)  # a mask applies to one generation
        assert_same_generation(
            generate(saved_patient, inputs, fast, True, **kwargs),
            generate(saved_patient, inputs, loop, True, **kwargs),
        )


def test_one_cached_forward_per_token_for_doctor_and_base(saved_patient, trained_doctor, tokenizer):
    """Ratio guidance against a LoRA base costs one cached single-token forward per step, of twice the rows (adapter
    rows, then base rows), never a re-run; the processor's scores are those of two separate models."""
    counted = lora_doctor(saved_patient, trained=True)
    calls = []
    original_forward = counted.forward

    def forward(*args, **kwargs):
        calls.append(
            (
                tuple(kwargs["input_ids"].shape),
                counted.base_model.model.model.layers[0].self_attn.q_proj.disable_adapters,
            )
        )
        return original_forward(*args, **kwargs)

    counted.forward = forward
    inputs = encode(tokenizer, PROMPTS)
    processor = DoctorLogitsProcessor(counted, betas=1.0, references="base", attention_mask=inputs.attention_mask)
    generate(saved_patient, inputs, processor, min_new_tokens=4, max_new_tokens=4)
    rows, width = inputs.input_ids.shape
    assert calls == [((2 * rows, width), False)] + [((2 * rows, 1), False)] * 3


@pytest.mark.parametrize("use_dora", [False, True])
def test_doctor_and_base_in_one_batch_score_like_two_models(saved_patient, tokenizer, use_dora):
    """Adapter rows and base rows in one forward give the scores of the doctor and of its base run apart (a DoRA
    adapter, which PEFT cannot mix per row, falls back to two forwards and gives them too)."""
    doctor = lora_doctor(saved_patient, trained=True, use_dora=use_dora)
    base = copy.deepcopy(saved_patient)
    inputs = encode(tokenizer, PROMPTS)
    fast = DoctorLogitsProcessor(doctor, betas=1.5, references="base", attention_mask=inputs.attention_mask)
    assert fast._base_in_batch == [not use_dora]
    loop = ReferenceGuidanceProcessor([doctor], [1.5], references=[base], attention_mask=inputs.attention_mask)
    for kwargs in ({}, BEAMS):
        fast.set_attention_mask(inputs.attention_mask)
        assert_same_generation(
            generate(saved_patient, inputs, fast, True, **kwargs),
            generate(saved_patient, inputs, loop, True, **kwargs),
        )


def save_doctor(path, lm, doctor_config):
    DoctorModel(lm, doctor_config=doctor_config).save_pretrained(path)
    return str(path)


def test_saved_doctor_decodes_with_its_recorded_defaults(saved_patient, trained_doctor, tokenizer, tmp_path):
    recorded = {"guidance": "ratio", "guidance_reference": "patient", "beta": 3.0, "alpha": 1.0}
    path = save_doctor(tmp_path / "ratio", trained_doctor, recorded)
    assert json.loads((tmp_path / "ratio" / "doctor_config.json").read_text())["guidance"] == "ratio"
    inputs = encode(tokenizer, PROMPTS)
    mask = inputs.attention_mask
    defaults = DoctorLogitsProcessor(path, attention_mask=mask)
    assert defaults.betas == [3.0] and defaults.alpha == 1.0 and defaults.references == ["patient"]
    explicit = DoctorLogitsProcessor(trained_doctor, betas=3.0, references="patient", attention_mask=mask)
    assert_same_generation(
        generate(saved_patient, inputs, defaults, True), generate(saved_patient, inputs, explicit, True)
    )

    overridden = DoctorLogitsProcessor(path, betas=1.0, alpha=0.5, attention_mask=mask)
    assert overridden.betas == [1.0] and overridden.alpha == 0.5 and overridden.references == ["patient"]
    mixed = DoctorLogitsProcessor(path, references="none")
    assert mixed.references == [None] and mixed.betas == [3.0]

    # A LoRA doctor trained against a base that is not known to be the patient: the base, adapter disabled.
    base_path = save_doctor(tmp_path / "base", trained_doctor, {**recorded, "guidance_reference": "initial"})
    assert DoctorLogitsProcessor(base_path).references == ["base"]
    assert DoctorLogitsProcessor(path, references="initial").references == [
        "base"
    ]  # weak-to-strong: never the patient
    # The DoctorModel itself carries the same defaults.
    assert DoctorLogitsProcessor(DoctorModel.from_pretrained(base_path)).betas == [3.0]


def test_doctors_without_recorded_guidance_keep_the_old_mix(trained_doctor, tmp_path):
    old = save_doctor(tmp_path / "old", trained_doctor, {"alpha": 1.0, "beta": 0.7, "theta": 0.5})
    processor = DoctorLogitsProcessor(old)
    assert processor.references == [None] and processor.betas == [0.7] and processor.alpha == 1.0
    plain = DoctorLogitsProcessor(tiny_causal_lm(seed=4))
    assert plain.references == [None] and plain.betas == [0.5] and plain.alpha == 1.0


def test_full_weight_ratio_doctor_loads_its_recorded_reference(saved_patient, tmp_path):
    start = tiny_causal_lm(seed=5, num_hidden_layers=3)
    start.save_pretrained(tmp_path / "start")
    trained = copy.deepcopy(start)
    with torch.no_grad():
        trained.lm_head.weight.mul_(1.5)
    recorded = {
        "guidance": "ratio",
        "guidance_reference": "initial",
        "beta": 2.0,
        "initial_name_or_path": str(tmp_path / "start"),
        "initial_num_layers": 2,
    }
    path = save_doctor(tmp_path / "doctor", trained, recorded)
    reference = DoctorLogitsProcessor(path).references[0]
    assert len(reference.model.layers) == 2  # loaded, then cut to the depth the doctor started from
    assert torch.equal(reference.model.layers[1].mlp.up_proj.weight, start.model.layers[1].mlp.up_proj.weight)

    missing = save_doctor(tmp_path / "missing", trained, {**recorded, "initial_name_or_path": str(tmp_path / "gone")})
    with pytest.raises(ValueError, match=r"trained against its initial weights .*gone.*references="):
        DoctorLogitsProcessor(missing)
    with pytest.raises(ValueError, match="has no PEFT adapter"):
        DoctorLogitsProcessor(trained, references="base")
    explicit = DoctorLogitsProcessor(path, references="initial").references[0]
    assert isinstance(explicit, torch.nn.Module) and len(explicit.model.layers) == 2
