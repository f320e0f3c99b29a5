"""`compile_doctors`: the doctors and references decoded at fixed shapes (static caches, compiled one-token steps)
give the tokens and mixed scores of the eager path, for every kind of doctor and reference, greedy, sampling, beams
and left padding; a step is compiled once, not once per token; a LoRA doctor's rows and its base's rows share one
forward through `RowMask` with PEFT's mixed-batch arithmetic.

Most tests compile with dynamo's `eager` backend (the traced graph run as it is: the fixed-shape path without the
minutes an inductor build costs on a CPU); one compiles with inductor, and a slow one runs the embedded patient.
"""

import copy

import pytest
import torch
from transformers import CompileConfig, GPT2Config, GPT2LMHeadModel

from tfpo_hf.guidance import static_decoding
from tfpo_hf.guidance.logits_process import DoctorLogitsProcessor
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor
from tfpo_hf.utils.adapters import (
    BASE_ROWS,
    RowMask,
    adapter_rows_masked,
    mixed_batch_adapter,
    row_maskable,
    rows_by_adapter,
)

from ..helpers.generation import PROMPTS, assert_same_generation, encode, generate


TRACED = CompileConfig(backend="eager", mode=None)


@pytest.fixture(scope="module")
def gpt2_doctor():
    """A doctor with learned absolute positions: wrong position ids under left padding change its scores."""
    config = GPT2Config(
        vocab_size=259, n_positions=512, n_embd=32, n_layer=2, n_head=4, bos_token_id=2, eos_token_id=2,
        pad_token_id=2,
    )  # fmt: skip
    torch.manual_seed(3)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def doctor_and_reference(kind, patient, gpt2_doctor):
    """`(doctor, references)` of each kind the processor runs as streams of their own or shared rows."""
    if kind == "full, no reference":
        return gpt2_doctor, "none"
    if kind == "full, reference a model":
        return tiny_causal_lm(hidden_size=48, num_hidden_layers=1, seed=2), tiny_causal_lm(seed=4)
    if kind == "LoRA, base rows in its forward":
        return tiny_lora_doctor(patient, seed=1), "initial"
    if kind == "LoRA with modules_to_save, base as its own stream":
        return tiny_lora_doctor(patient, seed=1, modules_to_save=["lm_head"]), "initial"
    return tiny_lora_doctor(patient, seed=2), "patient"


KINDS = [
    "full, no reference",
    "full, reference a model",
    "LoRA, base rows in its forward",
    "LoRA with modules_to_save, base as its own stream",
    "LoRA, the patient as reference",
]
DECODINGS = {
    "greedy": {},
    "beams": {"num_beams": 3, "num_return_sequences": 2},
    "sampling": {"do_sample": True, "num_return_sequences": 2, "top_k": 0},
}


def guided(patient, tokenizer, doctor, references, compile_doctors, decoding, prompts=PROMPTS, **kwargs):
    inputs = encode(tokenizer, prompts)
    processor = DoctorLogitsProcessor(
        doctor, betas=1.5, references=references, tokenizer=tokenizer, attention_mask=inputs.attention_mask,
        compile_doctors=compile_doctors,
    )  # fmt: skip
    torch.manual_seed(0)
    return generate(patient, inputs, processor, with_scores=True, **DECODINGS[decoding], **kwargs)


@pytest.mark.parametrize("decoding", list(DECODINGS))
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_shapes_equal_eager(patient, tokenizer, gpt2_doctor, kind, decoding):
    doctor, references = doctor_and_reference(kind, patient, gpt2_doctor)
    eager = guided(patient, tokenizer, doctor, references, False, decoding)
    fixed = guided(patient, tokenizer, doctor, references, TRACED, decoding)
    assert_same_generation(fixed, eager)


def test_generation_outgrowing_its_bucket_is_prefilled_into_the_next(patient, tokenizer, gpt2_doctor, monkeypatch):
    monkeypatch.setattr(static_decoding, "CACHE_BUCKET", 32)  # prompts of ~25 tokens, 30 new: two bucket changes
    doctor = tiny_lora_doctor(patient, seed=1)
    eager = guided(patient, tokenizer, doctor, "initial", False, "beams", max_new_tokens=30)
    fixed = guided(patient, tokenizer, doctor, "initial", TRACED, "beams", max_new_tokens=30)
    assert_same_generation(fixed, eager)


def counting_backend(compiled: list):
    """A dynamo backend that records each graph it is given and runs it as traced."""

    def backend(graph_module, example_inputs):
        compiled.append(graph_module)
        return graph_module.forward

    return backend


@pytest.mark.parametrize("reference", ["initial", "patient"])
def test_a_step_is_compiled_once_not_per_token(patient, tokenizer, reference):
    """The graphs compiled do not grow with the tokens generated: nothing in a step depends on its number."""
    doctor = tiny_lora_doctor(patient, seed=1)
    counts = []
    for new_tokens in (4, 16):
        compiled = []
        config = CompileConfig(backend=counting_backend(compiled), mode=None)
        fresh = copy.deepcopy(doctor)  # no compiled call cached from the other length
        torch._dynamo.reset()
        guided(
            patient,
            tokenizer,
            fresh,
            reference,
            config,
            "greedy",
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
        )
        counts.append(len(compiled))
    assert counts[0] >= 1  # the steps did go through the compiled call
    assert counts[1] == counts[0]


def test_inductor_compiled_steps_equal_eager(patient, tokenizer):
    doctor = tiny_lora_doctor(patient, seed=1)
    eager = guided(patient, tokenizer, doctor, "initial", False, "greedy", prompts=PROMPTS[:2])
    compiled = guided(
        patient, tokenizer, doctor, "initial", CompileConfig(mode="default"), "greedy", prompts=PROMPTS[:2]
    )
    assert torch.equal(compiled[0], eager[0])
    assert torch.allclose(compiled[1], eager[1], atol=1e-3, rtol=0)


def test_row_mask_equals_peft_mixed_batch(patient, tokenizer):
    doctor = tiny_lora_doctor(patient, seed=1)
    inputs = encode(tokenizer, PROMPTS)
    doubled = {name: tensor.repeat(2, 1) for name, tensor in inputs.items()}
    model = doctor.get_base_model()
    with torch.no_grad(), rows_by_adapter(doctor, [mixed_batch_adapter(doctor), BASE_ROWS]):
        expected = model(**doubled).logits
    row_weights = torch.cat([torch.ones(len(PROMPTS)), torch.zeros(len(PROMPTS))]).reshape(-1, 1, 1)
    adapter = mixed_batch_adapter(doctor)
    masks = {name: RowMask(row_weights) for name, m in model.named_modules() if hasattr(m, "lora_dropout")}
    dropouts_before = [m.lora_dropout[adapter] for m in model.modules() if hasattr(m, "lora_dropout")]
    with torch.no_grad(), adapter_rows_masked(model, adapter, masks):
        masked = model(**doubled).logits
    assert torch.allclose(masked, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(masked[: len(PROMPTS)], masked[len(PROMPTS) :], atol=1e-2)  # the adapter acts
    assert [m.lora_dropout[adapter] for m in model.modules() if hasattr(m, "lora_dropout")] == dropouts_before


@pytest.mark.parametrize(
    "lora_kwargs, maskable",
    [
        ({}, True),
        ({"use_dora": True}, False),
        ({"modules_to_save": ["lm_head"]}, False),
        ({"target_modules": ["embed_tokens", "q_proj"]}, False),
    ],
    ids=["plain", "dora", "modules_to_save", "embedding"],
)
def test_row_maskable_only_for_plain_lora_linear(patient, lora_kwargs, maskable):
    assert row_maskable(tiny_lora_doctor(patient, seed=1, **lora_kwargs)) is maskable
    assert row_maskable(tiny_causal_lm(seed=1)) is False  # no adapter: no base to share rows with


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_compile_doctors_takes_a_bool_or_a_compile_config(patient, value):
    with pytest.raises(ValueError, match="`compile_doctors` must be True, False or a transformers `CompileConfig`"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), compile_doctors=value)


@pytest.mark.slow
def test_embedded_patient_float32_fixed_shapes_equal_eager(default_patient):
    """The embedded SmolLM2-135M in float32, a LoRA doctor of it against its initial weights: the compiled (dynamo,
    traced) fixed-shape path and the eager path give the same greedy tokens."""
    patient, tokenizer = default_patient
    patient = copy.deepcopy(patient).float()
    tokenizer.padding_side = "left"
    doctor = tiny_lora_doctor(patient, seed=0)
    with torch.no_grad():
        for name, parameter in doctor.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.02)  # a small, trained-sized adapter: the base's tokens, nudged
    prompts = ["Write one sentence about the sea.", "Name a fruit.", "Why is the sky blue?"]
    inputs = encode(tokenizer, prompts)
    outputs = []
    for compile_doctors in (False, TRACED):
        processor = DoctorLogitsProcessor(
            doctor, betas=2.0, references="initial", tokenizer=tokenizer, attention_mask=inputs.attention_mask,
            compile_doctors=compile_doctors,
        )  # fmt: skip
        outputs.append(generate(patient, inputs, processor, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id))
    assert torch.equal(outputs[1], outputs[0])


def test_with_the_patient_compiled_by_generate(patient, tokenizer):
    """transformers' own compiled decoding of the patient (a static cache and a `compile_config`) beside compiled
    doctors: the tokens and scores of everything eager."""
    doctor = tiny_lora_doctor(patient, seed=1)
    eager = guided(patient, tokenizer, doctor, "initial", False, "greedy")
    config = CompileConfig(backend="eager", mode=None)
    config._compile_all_devices = True  # transformers compiles `generate` on CUDA only unless told otherwise
    both = guided(
        patient, tokenizer, doctor, "initial", config, "greedy", cache_implementation="static", compile_config=config
    )
    assert_same_generation(both, eager)


def test_a_base_that_cannot_share_fixed_shape_rows_is_refused(patient, tokenizer):
    """The processor runs such a base as a stream of its own; asked to share rows anyway, the forward says why."""
    from tfpo_hf.guidance.cached_forward import IncrementalForward, Stream

    doctor = tiny_lora_doctor(patient, seed=1, use_dora=True)
    forward = IncrementalForward(pad_token_id=2, compile_config=TRACED)
    with pytest.raises(ValueError, match="cannot share one fixed-shape forward with its base"):
        forward([Stream(doctor, with_base=True)], encode(tokenizer, PROMPTS[:1]).input_ids, torch.device("cpu"))
