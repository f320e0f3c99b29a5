"""DoctorModel: one forward for both heads, truncated doctors from the patient, saving and loading."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from tfpo_hf import DoctorModel
from tfpo_hf.doctor.config import UNRECORDED_BETA
from tfpo_hf.doctor.modeling import truncated_causal_lm
from tfpo_hf.testing import tiny_causal_lm


def test_forward_returns_logits_and_log_values_of_the_kept_positions():
    doctor = DoctorModel(tiny_causal_lm())
    with torch.no_grad():
        doctor.value_head.summary.weight.normal_()
        ids = torch.randint(3, 259, (2, 9))
        full = doctor(ids)
        kept = doctor(ids, logits_to_keep=4)
    assert full.logits.shape == (2, 9, 259) and full.log_values.shape == (2, 9)
    assert torch.allclose(kept.logits, full.logits[:, -4:], atol=1e-6)
    assert torch.allclose(kept.log_values, full.log_values[:, -4:], atol=1e-6)
    assert full.log_values.dtype == torch.float32


def test_value_head_starts_at_log_v_zero():
    doctor = DoctorModel(tiny_causal_lm())
    with torch.no_grad():
        assert torch.equal(doctor(torch.tensor([[5, 6, 7]])).log_values, torch.zeros(1, 3))


def test_truncated_doctor_keeps_the_first_layers_and_matches_a_manual_build():
    patient = tiny_causal_lm(num_hidden_layers=4)
    truncated = truncated_causal_lm(patient, 1)
    assert truncated.config.num_hidden_layers == 1 and len(truncated.model.layers) == 1
    assert patient.config.num_hidden_layers == 4 and len(patient.model.layers) == 4, "the patient is untouched"
    manual = tiny_causal_lm(num_hidden_layers=1, seed=99)
    state = {
        k: v
        for k, v in patient.state_dict().items()
        if not k.startswith("model.layers.") or k.startswith("model.layers.0.")
    }
    manual.load_state_dict(state)
    ids = torch.tensor([[1, 40, 50, 60]])
    with torch.no_grad():
        assert torch.allclose(truncated(ids).logits, manual(ids).logits, atol=1e-6)
    with pytest.raises(ValueError, match="between 1 and 4"):
        truncated_causal_lm(patient, 5)


def test_from_patient_round_trip_through_disk(tmp_path):
    patient = tiny_causal_lm(num_hidden_layers=4)
    doctor = DoctorModel.from_patient(patient, 2)
    doctor.doctor_config.beta = 0.3
    doctor.doctor_config.extra["written_by_a_newer_version"] = 1
    with torch.no_grad():
        doctor.value_head.summary.bias.fill_(0.25)
    doctor.save_pretrained(tmp_path)
    assert {"model.safetensors", "value_head.safetensors", "doctor_config.json", "config.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert not list(tmp_path.glob("*.bin")), "safetensors only"
    reloaded = DoctorModel.from_pretrained(tmp_path)
    assert reloaded.doctor_config.beta == 0.3 and reloaded.doctor_config.copy_of_patient is False
    assert reloaded.doctor_config.extra == {"written_by_a_newer_version": 1}, "unknown keys survive a round trip"
    ids = torch.tensor([[1, 40, 50, 60]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).log_values, torch.full((1, 4), 0.25))
        assert torch.allclose(
            AutoModelForCausalLM.from_pretrained(tmp_path)(ids).logits, doctor(ids).logits, atol=1e-6
        )


def test_plain_causal_lm_checkpoint_gets_a_fresh_value_head(tmp_path):
    tiny_causal_lm().save_pretrained(tmp_path)
    doctor = DoctorModel.from_pretrained(tmp_path)
    assert doctor.doctor_config.to_dict() == {} and doctor.doctor_config.decoding_beta == UNRECORDED_BETA
    with torch.no_grad():
        assert torch.equal(doctor(torch.tensor([[5, 6]])).log_values, torch.zeros(1, 2))


def test_push_to_hub_uploads_the_saved_folder(tmp_path, monkeypatch):
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            target = tmp_path / "hub" / repo_id
            import shutil

            shutil.copytree(folder_path, target)
            uploaded["path"] = target
            return f"https://hub/{repo_id}/commit/1"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    doctor = DoctorModel.from_patient(tiny_causal_lm(num_hidden_layers=2), 1)
    assert doctor.push_to_hub("user/doctor").endswith("commit/1")
    reloaded = DoctorModel.from_pretrained(uploaded["path"])
    card = (uploaded["path"] / "README.md").read_text()
    assert "library_name: tfpo-hf" in card
    ids = torch.tensor([[1, 40, 50]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, doctor(ids).logits, atol=1e-6)
