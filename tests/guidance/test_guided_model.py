"""`GuidedModel`: the patient and LoRA doctors of it in one forward, against `DoctorLogitsProcessor` (ratio guidance
against the patient) on the same weights, and against plain `generate()`."""

import copy

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from tfpo_hf import DoctorLogitsProcessor, DoctorModel
from tfpo_hf.guidance.guided_model import GroupedCache, GuidedModel
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor

from ..helpers.generation import ATOL, PROMPTS, assert_same_generation, encode, generate


SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 30, "num_return_sequences": 2}
BEAMS = {"num_beams": 3, "num_return_sequences": 2}


@pytest.fixture(scope="module")
def doctors(saved_patient):
    return [tiny_lora_doctor(saved_patient, seed) for seed in (1, 2)]


@pytest.fixture
def fresh_patient(saved_patient):
    """`GuidedModel` loads adapters into the patient's modules: each test gets its own copy."""
    return copy.deepcopy(saved_patient)


def processor_path(patient, doctors, betas, inputs, give_mask=True, normalize=False):
    # Without a mask, `generate` cannot tell padding from EOS (both id 2) and attends to every token; the fused doctor
    # rows share the patient's mask, so the processor is given the same all-ones mask.
    mask = inputs.attention_mask if give_mask else torch.ones_like(inputs.input_ids)
    return DoctorLogitsProcessor(doctors, betas=betas, references="patient", attention_mask=mask, normalize=normalize)


def fused_generate(guided, inputs, give_mask=True, seed=11, **kwargs):
    """`GuidedModel.generate` with the keyword arguments `helpers.generation.generate` uses."""
    kwargs = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 2, **kwargs}
    model_inputs = dict(inputs) if give_mask else {"input_ids": inputs.input_ids}
    torch.manual_seed(seed)
    out = guided.generate(**model_inputs, **kwargs, output_scores=True, return_dict_in_generate=True)
    return out.sequences[:, inputs.input_ids.shape[1] :], torch.stack(out.scores, dim=1)


def processed_generate(patient, inputs, processor, give_mask=True, seed=11, **kwargs):
    model_inputs = inputs if give_mask else {"input_ids": inputs.input_ids}
    torch.manual_seed(seed)
    return generate(patient, model_inputs, processor, True, **kwargs)


@pytest.mark.parametrize("give_mask", [True, False], ids=["mask", "no-mask"])
@pytest.mark.parametrize("count", [1, 2], ids=["one-doctor", "two-doctors"])
def test_greedy_equals_the_processor(fresh_patient, doctors, tokenizer, give_mask, count):
    inputs = encode(tokenizer, PROMPTS)
    betas = [1.5, 0.7][:count]
    expected = processed_generate(
        fresh_patient, inputs, processor_path(fresh_patient, doctors[:count], betas, inputs, give_mask), give_mask
    )
    guided = GuidedModel(fresh_patient, doctors[:count], betas=betas)
    fast = fused_generate(guided, inputs, give_mask)
    assert torch.equal(fast[0], expected[0])
    assert torch.allclose(fast[1], expected[1], atol=ATOL)
    assert not torch.equal(fast[0], generate(fresh_patient, inputs))  # the doctors do steer


@pytest.mark.parametrize(
    "lora_kwargs, row_maskable",
    [({}, True), ({"modules_to_save": ["lm_head"]}, False)],
    ids=["row-masks", "peft-routing"],
)
def test_both_row_paths_equal_the_processor(fresh_patient, saved_patient, tokenizer, lora_kwargs, row_maskable):
    """Plain LoRA doctors share the forward through row masks; a doctor with `modules_to_save` (which a mask cannot
    stand in for) through PEFT's per-row adapter names. Both give the processor's tokens."""
    doctors = [tiny_lora_doctor(saved_patient, seed, **lora_kwargs) for seed in (1, 2)]
    inputs = encode(tokenizer, PROMPTS)
    expected = processed_generate(fresh_patient, inputs, processor_path(fresh_patient, doctors, [1.5, 0.7], inputs))
    guided = GuidedModel(fresh_patient, doctors, betas=[1.5, 0.7])
    assert guided._row_maskable is row_maskable
    fast = fused_generate(guided, inputs)
    assert torch.equal(fast[0], expected[0])
    assert torch.allclose(fast[1], expected[1], atol=ATOL)


def test_sampling_with_returned_sequences_equals_the_processor(fresh_patient, doctors, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    expected = processed_generate(
        fresh_patient, inputs, processor_path(fresh_patient, doctors, [1.0, 0.5], inputs), **SAMPLING
    )
    fast = fused_generate(GuidedModel(fresh_patient, doctors, betas=[1.0, 0.5]), inputs, **SAMPLING)
    # Batched arithmetic may differ in the last bits: the scores agree to 1e-4 and, here, every token does too.
    finite = torch.isfinite(expected[1])
    assert torch.equal(finite, torch.isfinite(fast[1]))
    assert torch.allclose(fast[1][finite], expected[1][finite], atol=ATOL)
    assert (fast[0] != expected[0]).float().mean().item() == 0.0


def test_beam_search_equals_the_normalized_processor(fresh_patient, doctors, tokenizer):
    """Beams rank sums of per-token scores: the fused path returns log-probabilities of the mix, as the processor does
    with `normalize=True`. Beams are reordered along the way (the cache's groups must follow)."""
    inputs = encode(tokenizer, PROMPTS[1:])
    processor = processor_path(fresh_patient, doctors[:1], [2.0], inputs, normalize=True)
    parents = []
    find_parents = processor._forward._parents
    processor._forward._parents = lambda input_ids: parents.append(find_parents(input_ids)) or parents[-1]
    expected = processed_generate(fresh_patient, inputs, processor, **BEAMS)
    rows = torch.arange(len(inputs.input_ids) * 3)
    assert any(p is not None and not torch.equal(p, rows) for p in parents)  # beams were reordered
    fast = fused_generate(GuidedModel(fresh_patient, doctors[:1], betas=2.0), inputs, **BEAMS)
    assert_same_generation(fast, expected)


def test_beta_zero_is_exactly_plain_generate_and_the_patient_is_left_alone(fresh_patient, doctors, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    before = processed_generate(fresh_patient, inputs, None, **SAMPLING)
    guided = GuidedModel(fresh_patient, doctors, betas=0.0)
    plain = processed_generate(fresh_patient, inputs, None, **SAMPLING)
    fast = fused_generate(guided, inputs, **SAMPLING)
    assert torch.equal(fast[0], plain[0]) and torch.equal(fast[1], plain[1])
    # Outside the guided calls the patient holds its own modules: exactly the tokens and scores of before.
    assert torch.equal(plain[0], before[0]) and torch.equal(plain[1], before[1])
    assert not any(isinstance(module, BaseTunerLayer) for module in fresh_patient.modules())
    guided.set_betas([2.0, 1.0])
    fused_generate(guided, inputs)
    after = processed_generate(fresh_patient, inputs, None, **SAMPLING)  # adapters are out again after a call
    assert torch.equal(after[0], plain[0]) and torch.equal(after[1], plain[1])
    assert not any(isinstance(module, BaseTunerLayer) for module in fresh_patient.modules())


def test_forward_returns_the_mixed_scores(fresh_patient, doctors, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    processor = processor_path(fresh_patient, doctors, [1.0, 2.0], inputs)
    with torch.no_grad():
        patient_logits = fresh_patient(**inputs).logits[:, -1]
        expected = processor(inputs.input_ids, patient_logits)
        mixed = GuidedModel(fresh_patient, doctors, betas=[1.0, 2.0])(**inputs).logits[:, -1]
    assert mixed.shape == expected.shape
    assert torch.allclose(mixed, expected, atol=ATOL)


def test_saved_lora_doctor_decodes_with_its_recorded_weights(fresh_patient, doctors, tokenizer, tmp_path):
    DoctorModel(
        doctors[0], doctor_config={"guidance": "ratio", "guidance_reference": "patient", "beta": 3.0}
    ).save_pretrained(tmp_path / "doctor")
    inputs = encode(tokenizer, PROMPTS)
    guided = GuidedModel(fresh_patient, str(tmp_path / "doctor"))
    assert guided.betas == [3.0] and guided.alpha == 1.0 and guided.mixes == ["ratio"]
    expected = processed_generate(fresh_patient, inputs, processor_path(fresh_patient, doctors[:1], [3.0], inputs))
    assert_same_generation(fused_generate(guided, inputs), expected)


def test_doctors_that_are_not_lora_adapters_are_refused(fresh_patient, tmp_path):
    tiny_causal_lm(seed=3).save_pretrained(tmp_path / "full")
    for doctor in (str(tmp_path / "full"), tiny_causal_lm(seed=3)):
        with pytest.raises(ValueError, match="not a LoRA adapter of the patient.*DoctorLogitsProcessor"):
            GuidedModel(fresh_patient, doctor)
    with pytest.raises(ValueError, match="Got 3 betas for 1 doctors"):
        GuidedModel(fresh_patient, tiny_lora_doctor(fresh_patient, 4), betas=[1.0, 1.0, 1.0])


def test_grouped_cache_reorders_every_group_alike():
    cache = GroupedCache()
    cache.groups = 3
    keys = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1)  # rows: 3 groups of 2
    cache.update(keys, keys.clone(), layer_idx=0)
    cache.reorder_cache(torch.tensor([1, 1]))
    assert cache.layers[0].keys.flatten().tolist() == [1, 1, 3, 3, 5, 5]
    cache.batch_repeat_interleave(2)
    assert cache.layers[0].keys.flatten().tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5]


def test_streamer_and_stopping_criteria_see_the_guided_tokens(fresh_patient, doctors, tokenizer, capsys):
    from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

    class StopAfter(StoppingCriteria):
        def __init__(self, length):
            self.length = length

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((len(input_ids),), input_ids.shape[1] >= self.length, dtype=torch.bool)

    inputs = encode(tokenizer, PROMPTS[1:2])
    guided = GuidedModel(fresh_patient, doctors[:1], betas=1.5)
    expected = fused_generate(guided, inputs)[0]
    streamer = TextStreamer(tokenizer, skip_prompt=True)
    capsys.readouterr()
    out = guided.generate(**inputs, max_new_tokens=10, do_sample=False, pad_token_id=2, streamer=streamer)
    assert torch.equal(out[:, inputs.input_ids.shape[1] :], expected)
    assert capsys.readouterr().out.strip() == tokenizer.decode(expected[0]).strip()
    stop = StoppingCriteriaList([StopAfter(inputs.input_ids.shape[1] + 4)])
    short = guided.generate(**inputs, max_new_tokens=10, do_sample=False, pad_token_id=2, stopping_criteria=stop)
    assert torch.equal(short[:, inputs.input_ids.shape[1] :], expected[:, :4])


@pytest.mark.slow
def test_bf16_fused_and_processor_agree_on_embedded_patient(default_patient):
    """In bfloat16 on real weights (the embedded SmolLM2-135M cast to bf16), the fused forward and the processor's
    forwards round differently (other batch shapes, LoRA rows mixed), and ratio guidance at beta 2 (`2 log p_doctor -
    log p_patient`) triples those differences: on the processor's own completions, the fused mix picks the same next
    token as the processor's arithmetic wherever their top two are 0.5 apart or more, and on at least 90% of all
    tokens (measured: 0.94; the issue's 98% is not reached in bf16, see docs/results.md)."""
    patient, tokenizer = default_patient
    patient = copy.deepcopy(patient).to(torch.bfloat16)
    tokenizer.padding_side = "left"
    doctor = tiny_lora_doctor(patient, seed=0)
    with torch.no_grad():
        for name, parameter in doctor.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.02)  # a trained-sized adapter: it moves some tokens, not every one
    prompts = [
        "Write one sentence about the sea.", "Name a fruit and say why you like it.", "Why is the sky blue?",
        "Give me a tip for learning to cook.", "Describe a quiet morning.", "What makes a good friend?",
    ]  # fmt: skip
    inputs = encode(tokenizer, prompts)
    new_tokens = 32
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "pad_token_id": tokenizer.pad_token_id}
    processor = DoctorLogitsProcessor(
        doctor, betas=2.0, references="patient", tokenizer=tokenizer, attention_mask=inputs.attention_mask
    )
    completions = generate(patient, inputs, processor, **kwargs)
    assert not torch.equal(completions, generate(patient, inputs, **kwargs))  # the doctor does steer
    batch = {
        "input_ids": torch.cat([inputs.input_ids, completions], dim=-1),
        "attention_mask": torch.cat([inputs.attention_mask, torch.ones_like(completions)], dim=-1),
    }
    steps = slice(-new_tokens - 1, -1)
    with torch.no_grad():
        fused = GuidedModel(patient, doctor, betas=2.0)(**batch).logits[:, steps]
        patient_logps = patient(**batch).logits[:, steps].float().log_softmax(-1)
        doctor_logps = doctor(**batch).logits[:, steps].float().log_softmax(-1)
    by_processor = patient_logps + 2.0 * (doctor_logps - patient_logps)
    agree = fused.argmax(-1) == by_processor.argmax(-1)
    top_two = by_processor.topk(2, dim=-1).values
    clear = top_two[..., 0] - top_two[..., 1] >= 0.5
    assert clear.float().mean() > 0.5  # most steps are clear choices, so the first check has something to check
    assert agree[clear].all(), "the fused mix and the processor part on a clear choice"
    assert agree.float().mean() >= 0.90, f"they agree on {agree.float().mean():.3f} of the tokens"
