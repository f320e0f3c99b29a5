"""The doctor's model card: Hub metadata read back by `huggingface_hub`, and the body a user reads."""

import json
import socket

import pytest
from huggingface_hub import ModelCard

from tfpo_hf.doctor.config import UNRECORDED_BETA
from tfpo_hf.doctor.model_card import PAPER_ID, guidance_sentence, write_model_card


PATIENT = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONFIG = {
    "patient_name_or_path": PATIENT,
    "alpha": 1.0,
    "beta": 2.0,
    "guidance": "ratio",
    "guidance_reference": "patient",
    "theta": 0.3,
}


class ConfigObject:
    """Stands in for a dataclass config: only `to_dict()` is used."""

    def __init__(self, values):
        self.values = values

    def to_dict(self):
        return dict(self.values)


def write(tmp_path, doctor_config=CONFIG, **kwargs):
    path = tmp_path / "README.md"
    write_model_card(path, doctor_config, **kwargs)
    return ModelCard.load(path), path.read_text()


def test_full_card_metadata_parses_back(tmp_path):
    card, _ = write(tmp_path, base_model="HuggingFaceTB/SmolLM2-135M", dataset_name="user/prefs")
    data = card.data.to_dict()
    assert data["library_name"] == "tfpo-hf"
    assert data["tags"] == ["tfpo", "llmdoctor", "test-time-alignment", "trl"]
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert data["datasets"] == ["user/prefs"]
    assert data["pipeline_tag"] == "text-generation"


def test_metadata_omits_what_is_not_known(tmp_path):
    card, text = write(tmp_path, {})
    data = card.data.to_dict()
    assert data["library_name"] == "tfpo-hf" and "tfpo" in data["tags"]
    assert "base_model" not in data and "datasets" not in data
    assert "base_model:" not in text and "datasets:" not in text


def test_local_base_model_is_not_written_as_a_hub_id(tmp_path):
    (tmp_path / "start").mkdir()
    card, _ = write(tmp_path, base_model=str(tmp_path / "start"))
    assert "base_model" not in card.data.to_dict()


def test_body_has_usage_settings_and_citation(tmp_path):
    card, _ = write(tmp_path, base_model="HuggingFaceTB/SmolLM2-135M", dataset_name="user/prefs")
    body = card.text
    assert f"# TFPO doctor for {PATIENT}" in body
    assert "from tfpo_hf import DoctorLogitsProcessor" in body
    assert f'AutoModelForCausalLM.from_pretrained("{PATIENT}")' in body
    assert f'AutoTokenizer.from_pretrained("{PATIENT}")' in body
    assert "logits_processor=LogitsProcessorList([doctor])" in body
    assert guidance_sentence(CONFIG) in body
    assert "```json\n" + json.dumps(CONFIG, indent=2, sort_keys=True) + "\n```" in body
    assert "https://huggingface.co/datasets/user/prefs" in body
    assert "Training hyperparameters" not in body and "## Metrics" not in body
    assert f"arXiv:{PAPER_ID}" in body and f"https://arxiv.org/abs/{PAPER_ID}" in body
    assert "```bibtex\n@article{" in body
    assert "Shen, Tiesunlong" in body and "Cambria, Erik" in body
    assert "Token-Level Flow-Guided Preference Optimization" in body
    assert "- Transformers: " in body and "- PyTorch: " in body


def test_hyperparameters_and_metrics_sections(tmp_path):
    card, _ = write(
        tmp_path,
        hyperparameters={"learning_rate": 0.001, "max_steps": 7},
        metrics={"loss/subtb": 0.123456, "epoch": 2.0},
    )
    body = card.text
    assert "## Training hyperparameters\n\n- learning_rate: 0.001\n- max_steps: 7\n" in body
    assert "## Metrics\n\n- epoch: 2\n- loss/subtb: 0.1235\n" in body


def test_config_object_with_to_dict(tmp_path):
    card, _ = write(tmp_path, ConfigObject(CONFIG))
    assert json.dumps(CONFIG, indent=2, sort_keys=True) in card.text
    assert f'from_pretrained("{PATIENT}")' in card.text
    assert guidance_sentence(ConfigObject(CONFIG)) == guidance_sentence(CONFIG)


def test_unknown_patient_gets_a_placeholder(tmp_path):
    card, _ = write(tmp_path, {"beta": 1.5})
    assert "# TFPO doctor for the patient it was trained for" in card.text
    assert 'from_pretrained("<patient model>")' in card.text


def test_writing_the_card_needs_no_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model card tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    card, _ = write(tmp_path, base_model="HuggingFaceTB/SmolLM2-135M", dataset_name="user/prefs")
    assert card.data.library_name == "tfpo-hf"


@pytest.mark.parametrize("guidance", [None, "mix"])
def test_guidance_sentence_mix(guidance):
    config = {"alpha": 0.8, "beta": 2.0} | ({"guidance": guidance} if guidance else {})
    assert guidance_sentence(config) == "Decoding mixes log-probabilities: 0.8 * log p_patient + 2 * log p_doctor."


def test_guidance_sentence_mix_default_weights():
    assert guidance_sentence({}) == (
        f"Decoding mixes log-probabilities: 1 * log p_patient + {UNRECORDED_BETA:g} * log p_doctor."
    )


def test_guidance_sentence_ratio_names_the_reference():
    patient_reference = guidance_sentence(CONFIG)
    assert patient_reference.startswith("Ratio guidance")
    assert "1 * log p_patient + 2 * (log p_doctor - log p_ref)" in patient_reference
    assert "the reference being the patient itself" in patient_reference
    initial = guidance_sentence({**CONFIG, "guidance_reference": "initial"})
    assert "the reference being the weights the doctor started from" in initial
    assert 'references="base"' in initial
