"""Bad or hostile input to the doctor (`DoctorModel`, `DoctorConfig`): arguments of the wrong kind, local paths that
do not exist, and checkpoints that would be unpickled; each case asserts the exception and the key words of its
message (the problem and the fix), or that the input works and gives the right result."""

import os
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from tfpo_hf import DoctorConfig, DoctorLogitsProcessor, DoctorModel
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.disk import pickle_weights, saved_and_reloaded, spy_on_torch_load
from ..helpers.hub import forbid_hub_calls


MISSING_PATHS = ["./missing-doctor", "~/missing", "/abs/missing", "missing/sub/dir"]


# ---------------------------------------------------------------------------------------------- wrong kinds
@pytest.mark.parametrize("value", [None, "my-doctor", 3])
def test_doctor_model_needs_a_causal_lm(value):
    with pytest.raises(ValueError, match=r"`pretrained_model` must be a causal LM .*DoctorModel.from_pretrained"):
        DoctorModel(value)


def test_doctor_model_refuses_a_tokenizer_naming_its_type():
    with pytest.raises(ValueError, match=r"`pretrained_model` must be a causal LM .*got a \w+"):
        DoctorModel(tiny_tokenizer())


@pytest.mark.parametrize("value", [None, 3, ""])
def test_from_pretrained_needs_a_path_or_hub_id(value, monkeypatch):
    forbid_hub_calls(monkeypatch)
    with pytest.raises(ValueError, match=rf"`pretrained_model_name_or_path` must be .*got {re.escape(repr(value))}"):
        DoctorModel.from_pretrained(value)
    with pytest.raises(ValueError, match=rf"`name_or_path` must be .*got {re.escape(repr(value))}"):
        DoctorConfig.from_pretrained(value)


# ---------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("path", MISSING_PATHS)
def test_a_missing_local_doctor_says_it_does_not_exist_before_any_hub_call(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    forbid_hub_calls(monkeypatch)
    message = rf"path {re.escape(os.path.expanduser(path))} does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        DoctorModel.from_pretrained(path)
    with pytest.raises(FileNotFoundError, match=message):
        DoctorConfig.from_pretrained(path)


def test_a_doctor_under_home_loads_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    doctor.save_pretrained(tmp_path / "doctor")
    reloaded = DoctorModel.from_pretrained("~/doctor")
    input_ids = torch.tensor([[1, 72, 105]])
    assert torch.equal(reloaded(input_ids).logits, doctor(input_ids).logits)


# ---------------------------------------------------------------------------------------------- trust boundaries
@pytest.mark.parametrize("pickled", ["pytorch_model.bin", "model.pt"])
def test_a_doctor_with_pickled_weights_only_is_refused_and_nothing_is_unpickled(pickled, tmp_path, monkeypatch):
    DoctorModel.from_patient(tiny_causal_lm(seed=1)).save_pretrained(tmp_path / "doctor")
    pickle_weights(tmp_path / "doctor", pickled)
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match=rf"{pickled} holds pickled weights.*Convert.*use_safetensors=False"):
        DoctorModel.from_pretrained(tmp_path / "doctor")
    assert unpickled == []


def test_use_safetensors_false_opts_in_to_pickled_weights(tmp_path, monkeypatch):
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    doctor.save_pretrained(tmp_path / "doctor")
    pickle_weights(tmp_path / "doctor")
    unpickled = spy_on_torch_load(monkeypatch)
    reloaded = DoctorModel.from_pretrained(tmp_path / "doctor", use_safetensors=False)
    assert unpickled == [str(tmp_path / "doctor" / "pytorch_model.bin")]
    input_ids = torch.tensor([[1, 72, 105]])
    assert torch.equal(reloaded(input_ids).logits, doctor(input_ids).logits)


def test_a_lora_doctor_with_a_pickled_adapter_is_refused(saved_patient, tmp_path, monkeypatch):
    DoctorModel(tiny_lora_doctor(saved_patient, seed=1)).save_pretrained(tmp_path / "doctor")
    pickle_weights(tmp_path / "doctor", "adapter_model.bin")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match="adapter_model.bin holds pickled weights"):
        DoctorModel.from_pretrained(tmp_path / "doctor")
    assert unpickled == []


@pytest.mark.parametrize("loader", [DoctorModel.from_pretrained, DoctorLogitsProcessor])
def test_a_pickled_adapter_in_a_subfolder_is_refused_and_nothing_is_unpickled(
    loader, saved_patient, tmp_path, monkeypatch
):
    # a repo holding safetensors weights at its root and, under `doctor/`, a LoRA doctor whose adapter is pickled
    saved_patient.save_pretrained(tmp_path)
    DoctorModel(tiny_lora_doctor(saved_patient, seed=1)).save_pretrained(tmp_path / "doctor")
    pickle_weights(tmp_path / "doctor", "adapter_model.bin")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(tmp_path / 'doctor' / 'adapter_model.bin'))} holds pickled"
    ):
        loader(str(tmp_path), subfolder="doctor")
    assert unpickled == []


def test_a_pickled_variant_is_refused_although_the_default_weights_are_safetensors(tmp_path, monkeypatch):
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    doctor.save_pretrained(tmp_path / "doctor")
    torch.save(doctor.pretrained_model.state_dict(), tmp_path / "doctor" / "pytorch_model.fp16.bin")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match=r"pytorch_model\.fp16\.bin holds pickled weights.*variant='fp16'"):
        DoctorModel.from_pretrained(tmp_path / "doctor", variant="fp16")
    assert unpickled == []


def test_a_doctor_in_a_subfolder_or_of_a_variant_loads_all_of_its_files_from_there(tmp_path):
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    torch.nn.init.ones_(doctor.value_head.summary.weight)
    doctor.doctor_config = DoctorConfig(beta=3.0)
    DoctorModel.from_patient(tiny_causal_lm(seed=2)).save_pretrained(tmp_path)  # another doctor at the root
    doctor.save_pretrained(tmp_path / "doctor", variant="fp16")
    reloaded = DoctorModel.from_pretrained(tmp_path, subfolder="doctor", variant="fp16")
    input_ids = torch.tensor([[1, 72, 105]])
    assert torch.equal(reloaded(input_ids).logits, doctor(input_ids).logits)
    assert torch.equal(reloaded.value_head.summary.weight, doctor.value_head.summary.weight)
    assert reloaded.doctor_config.beta == 3.0


def test_the_value_head_is_only_read_from_safetensors(tmp_path, monkeypatch):
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    torch.nn.init.ones_(doctor.value_head.summary.weight)
    doctor.save_pretrained(tmp_path / "doctor")
    head = tmp_path / "doctor" / "value_head.safetensors"
    torch.save(doctor.value_head.state_dict(), tmp_path / "doctor" / "value_head.pt")
    head.unlink()
    unpickled = spy_on_torch_load(monkeypatch)
    reloaded = DoctorModel.from_pretrained(tmp_path / "doctor")
    assert unpickled == []
    assert torch.count_nonzero(reloaded.value_head.summary.weight) == 0  # a fresh head, the .pt left alone


def test_resuming_from_a_pickled_checkpoint_is_refused(tmp_path, monkeypatch):
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=1))
    doctor.save_pretrained(tmp_path / "checkpoint")
    pickle_weights(tmp_path / "checkpoint")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match="pytorch_model.bin holds pickled weights"):
        doctor.load_doctor_weights(tmp_path / "checkpoint")
    assert unpickled == []


def test_trust_remote_code_is_only_passed_when_given(tmp_path, monkeypatch):
    saved_and_reloaded(tiny_causal_lm(seed=1), tmp_path / "lm")
    calls, original = [], AutoModelForCausalLM.from_pretrained

    def from_pretrained(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    DoctorModel.from_pretrained(tmp_path / "lm")
    DoctorModel.from_pretrained(tmp_path / "lm", trust_remote_code=False)
    assert "trust_remote_code" not in calls[0] and calls[1]["trust_remote_code"] is False
