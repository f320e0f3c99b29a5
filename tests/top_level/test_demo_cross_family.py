"""`tfpo-hf demo --cross_family_doctor`: a doctor of another tokenizer trained on the patient's pairs (its rewards
moved onto its tokens) and evaluated beside the LLMdoctor of the patient's family, on tiny models."""

import json

import pytest
from transformers import AutoTokenizer

from tfpo_hf.cli import main
from tfpo_hf.cross_tokenizer import TextDoctor
from tfpo_hf.evaluation import judges
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer

from ..helpers.disk import saved_model_folders
from .test_demo_weak_to_strong import letter_a_judge


@pytest.fixture
def tiny_families(tmp_path):
    """Folders of a patient (byte tokenizer, a head padded to 272 rows) and of a doctor base of another family (BPE, 320 ids)."""
    return saved_model_folders(
        tmp_path,
        {
            "patient": (tiny_causal_lm(vocab_size=272, hidden_size=64, num_hidden_layers=2, seed=0), tiny_tokenizer()),
            "other_family": (tiny_causal_lm(vocab_size=320, num_hidden_layers=1, seed=1), tiny_bpe_tokenizer()),
        },
    )


def test_a_doctor_of_another_family_gets_its_row_and_targets(tiny_families, tmp_path, monkeypatch):
    monkeypatch.setitem(judges.BUILTIN_JUDGES, "letter_a", letter_a_judge)
    read_as_text = []  # the doctor of another family is guided through its own tokens, not the patient's ids
    read_rows = TextDoctor.__call__
    monkeypatch.setattr(TextDoctor, "__call__", lambda self, *a: read_as_text.append(1) or read_rows(self, *a))
    output_dir = tmp_path / "report"
    command = ["demo", "--quick", "--patient", tiny_families["patient"]]
    command += ["--cross_family_doctor", tiny_families["other_family"], "--judge", "letter_a"]
    command += ["--patient_dtype", "float32", "--ablation", "false", "--baselines", "false", "--best_of_n", "0"]
    command += ["--choose_guidance_beta", "true", "--output_dir", str(output_dir)]
    main(command)
    assert read_as_text

    results = json.loads((output_dir / "results.json").read_text())
    cross = [method for method in results["methods"] if method["name"].startswith("LLMdoctor, doctor of another")]
    assert len(cross) == 1 and 0 <= cross[0]["win_rate"] <= 1
    doctor = output_dir / "cross_family_doctor"
    recorded = json.loads((doctor / "doctor_config.json").read_text())
    assert recorded["guidance"] == "ratio" and recorded["guidance_reference"] == "initial"
    assert cross[0]["name"] == f"LLMdoctor, doctor of another family beta={recorded['beta']:g}"
    assert AutoTokenizer.from_pretrained(doctor).get_vocab() == tiny_bpe_tokenizer().get_vocab()  # its own, saved
    report = (output_dir / "report.md").read_text()
    assert "LLMdoctor, doctor of another family: win rate against the unguided patient >= 0.7" in report
