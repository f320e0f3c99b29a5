"""`tfpo-hf demo` in a weak-to-strong run, on two tiny models of different sizes and head widths sharing one tokenizer:
the doctors are LoRA adapters on the small model, guided against their initial weights, and the report holds the
small model alone, DPO on it and DPO-LoRA on the patient, with the weak-to-strong targets."""

import json

import pytest

from tfpo_hf.cli import main
from tfpo_hf.evaluation import judges
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.disk import saved_model_folders


def letter_a_judge():
    """Scores texts by their share of the letter "a": random tiny models give varied scores, so pairs exist."""
    return lambda text: text.count("a") / (len(text) + 1)


@pytest.fixture
def tiny_pair(tmp_path):
    """Folders of a 2-layer patient with a padded head (272 rows) and a 1-layer, narrower doctor base (259 rows)."""
    tokenizer = tiny_tokenizer()
    return saved_model_folders(
        tmp_path,
        {
            "patient": (tiny_causal_lm(vocab_size=272, hidden_size=64, num_hidden_layers=2, seed=0), tokenizer),
            "doctor_base": (tiny_causal_lm(vocab_size=259, hidden_size=32, num_hidden_layers=1, seed=1), tokenizer),
        },
    )


def test_weak_to_strong_demo_reports_every_row_and_resumes(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setitem(judges.BUILTIN_JUDGES, "letter_a", letter_a_judge)
    output_dir = tmp_path / "report"
    command = ["demo", "--quick", "--patient", tiny_pair["patient"], "--doctor_base", tiny_pair["doctor_base"]]
    command += ["--judge", "letter_a", "--patient_dtype", "float32", "--ablation", "false"]
    command += ["--choose_guidance_beta", "true", "--output_dir"]
    main([*command, str(output_dir)])

    results = json.loads((output_dir / "results.json").read_text())
    names = [method["name"] for method in results["methods"]]
    beta = results["metadata"]["llmdoctor_beta_choice"]["beta"]
    for name in (
        "patient (sampling)",
        f"LLMdoctor beta={beta:g}",
        "doctors' base alone (sampling)",
        "DPO (TRL, LoRA)",
        "DPO on the doctors' base (TRL, LoRA)",
    ):
        assert name in names, name
    doctor = output_dir / "doctor"
    recorded = json.loads((doctor / "doctor_config.json").read_text())
    assert recorded["guidance"] == "ratio" and recorded["guidance_reference"] == "initial"
    assert recorded["patient_name_or_path"] == tiny_pair["patient"] and recorded["beta"] == beta
    assert (
        json.loads((doctor / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_pair["doctor_base"]
    )
    report = (output_dir / "report.md").read_text()
    assert "Weak to strong." in report and "Head to head against DPO on the doctors' base (TRL, LoRA) >= 0.6" in report

    # Started again with --resume, the run reuses every finished step: no model is trained or sampled again.
    monkeypatch.setattr("tfpo_hf.demo.doctors.TFPOTrainer.train", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr("tfpo_hf.demo.pairs.patient_generate_fn", lambda *a, **k: pytest.fail("sampled again"))
    main([*command, str(output_dir), "--resume", "true"])
    assert json.loads((output_dir / "results.json").read_text())["methods"] == results["methods"]
