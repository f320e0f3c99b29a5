"""Every kind of doctor the library saves, through disk, with every guidance reference.

Each kind (a full copy of the patient, a truncated copy, a LoRA copy) is trained for one step by `TFPOTrainer` (a
large learning rate, so that the doctor moves away from its initial weights) and saved with `save_model()`, with its
value head or with the value head file removed. It is then loaded from the folder into new objects
(`DoctorLogitsProcessor(folder)`, `DoctorModel.from_pretrained(folder)`, `GuidedModel(patient, folder)`) and must
guide a few greedy tokens exactly as the in-memory doctor does: the same tokens and, step by step, the same mixed
scores. The guidance term is checked to be non-zero, so a reference that silently became the doctor itself (or a
doctor that silently dropped out) fails.
"""

import copy
import shutil

import pytest
import torch
from peft import LoraConfig

from tfpo_hf import DoctorLogitsProcessor, DoctorModel, GuidedModel, TFPOTrainer
from tfpo_hf.doctor.modeling import truncated_causal_lm

from ..helpers.generation import PROMPTS, assert_same_generation, encode, generate
from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args


# kind: (num_layers, LoRA settings); `modules_to_save` holds a full trained copy of the LM head beside the adapter
KINDS = {
    "full": (None, None),
    "truncated": (1, None),
    "lora": (None, {"target_modules": "all-linear"}),
    "lora+modules_to_save": (None, {"target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]}),
}
REFERENCES = [None, "none", "initial", "base", "patient", "model"]  # None: what the doctor recorded
BETA = 4.0


@pytest.fixture(scope="module", params=list(KINDS))
def trained(request, saved_patient, tokenizer, tmp_path_factory):
    """`(kind, in-memory DoctorModel, saved folder)` after one training step."""
    num_layers, lora = KINDS[request.param]
    tmp_path = tmp_path_factory.mktemp(request.param)
    trainer = TFPOTrainer(
        DoctorModel.from_patient(saved_patient, num_layers),
        args=make_args(tmp_path / "out", max_steps=1, learning_rate=0.05, guidance_beta=BETA),
        train_dataset=scored_dataset(8),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, **lora) if lora else None,
    )
    trainer.train()
    trainer.save_model()
    return request.param, trainer.model.eval(), tmp_path / "out"


@pytest.fixture(params=[True, False], ids=["value-head", "no-value-head"])
def saved_folder(request, trained, tmp_path):
    """The saved doctor as it is, or a copy of it without `value_head.safetensors` (an LM-only export)."""
    folder = trained[2]
    if request.param:
        return str(folder)
    copied = tmp_path / "no-head"
    shutil.copytree(folder, copied)
    (copied / "value_head.safetensors").unlink()
    return str(copied)


def initial_weights(kind, patient):
    """The weights the doctor started from, as a separate model."""
    start = copy.deepcopy(patient)
    return truncated_causal_lm(start, KINDS[kind][0]) if KINDS[kind][0] else start


def guided(patient, inputs, doctor, reference, kind, **kwargs):
    """`(processor, (tokens, scores))` of greedy decoding guided by `doctor` with `reference`."""
    if reference == "model":
        reference = initial_weights(kind, patient)
    processor = DoctorLogitsProcessor(doctor, references=reference, attention_mask=inputs.attention_mask, **kwargs)
    return processor, generate(patient, inputs, processor, True, max_new_tokens=6)


@pytest.mark.parametrize("reference", REFERENCES, ids=[str(r) for r in REFERENCES])
def test_saved_doctor_guides_like_the_in_memory_one(saved_patient, trained, saved_folder, reference, tokenizer):
    kind, doctor, _ = trained
    inputs = encode(tokenizer, PROMPTS)
    if reference == "base" and not kind.startswith("lora"):
        with pytest.raises(ValueError, match="has no PEFT adapter"):
            DoctorLogitsProcessor(saved_folder, references=reference, tokenizer=tokenizer)
        return
    in_memory, expected = guided(saved_patient, inputs, doctor, reference, kind)
    assert in_memory.betas == [BETA]  # recorded by the trainer, read back from the doctor
    plain = generate(saved_patient, inputs, None, True, max_new_tokens=6)
    guidance = expected[1][:, 0] - torch.log_softmax(plain[1][:, 0], dim=-1)
    assert guidance.nan_to_num(posinf=0, neginf=0).abs().max() > 1e-2  # the doctor steers: not a no-op

    for source in (saved_folder, DoctorModel.from_pretrained(saved_folder).eval()):
        loaded, result = guided(saved_patient, inputs, source, reference, kind, tokenizer=tokenizer)
        assert loaded.betas == in_memory.betas and loaded.alpha == in_memory.alpha
        assert [type(r) if isinstance(r, torch.nn.Module) else r for r in loaded.references] == [
            type(r) if isinstance(r, torch.nn.Module) else r for r in in_memory.references
        ]
        assert_same_generation(result, expected)


def test_recorded_references_are_what_each_kind_was_trained_against(trained, tokenizer):
    """A copy of the patient decodes against the patient's own scores, a truncated copy against its initial weights
    reloaded and cut to its depth, and with `references="initial"` a LoRA doctor against its base."""
    kind, _, folder = trained
    recorded = DoctorLogitsProcessor(str(folder), tokenizer=tokenizer).references[0]
    initial = DoctorLogitsProcessor(str(folder), references="initial", tokenizer=tokenizer).references[0]
    if kind == "truncated":
        assert isinstance(recorded, torch.nn.Module) and len(recorded.model.layers) == 1
    else:
        assert recorded == "patient"
    assert initial == "base" if kind.startswith("lora") else isinstance(initial, torch.nn.Module)


@pytest.mark.parametrize("reference", [None, "patient", "base"], ids=["recorded", "patient", "base"])
def test_saved_lora_doctor_in_guided_model_is_the_in_memory_processor(
    saved_patient, trained, saved_folder, reference, tokenizer
):
    """`GuidedModel` shares the patient's forward with a LoRA copy: its reference is the patient, which for a copy
    is the doctor's base, so it must match the processor with either reference."""
    kind, doctor, _ = trained
    if not kind.startswith("lora"):
        with pytest.raises(ValueError, match="not a LoRA adapter of the patient"):
            GuidedModel(copy.deepcopy(saved_patient), saved_folder)
        return
    inputs = encode(tokenizer, PROMPTS)
    _, expected = guided(saved_patient, inputs, doctor, reference, kind)
    model = GuidedModel(copy.deepcopy(saved_patient), saved_folder)
    assert model.betas == [BETA]
    out = model.generate(
        **inputs, max_new_tokens=6, do_sample=False, pad_token_id=2, output_scores=True, return_dict_in_generate=True
    )
    result = out.sequences[:, inputs.input_ids.shape[1] :], torch.stack(out.scores, dim=1)
    assert_same_generation(result, expected)
