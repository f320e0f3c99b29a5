"""`tfpo-hf demo --quick` on the real SmolLM2 patient writes a complete report (not that the doctor wins)."""

import json

import pytest

from tfpo_hf.cli import main


@pytest.mark.slow
def test_quick_demo_writes_report_files_with_numbers(tmp_path):
    main(["demo", "--quick", "--output_dir", str(tmp_path)])
    for name in ("report.md", "results.json", "reward_vs_diversity.png", "token_rewards.html", "token_rewards.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "doctor" / "value_head.safetensors").exists()
    results = json.loads((tmp_path / "results.json").read_text())
    names = [m["name"] for m in results["methods"]]
    assert {"patient (greedy)", "patient (sampling)", "DPO (TRL, LoRA)"} <= set(names)
    assert any(n.startswith("LLMdoctor") for n in names) and any(n.startswith("GenARM-style") for n in names)
    for method in results["methods"]:
        for key in ("mean_score", "win_rate", "distinct_2", "self_bleu", "seconds_per_sample"):
            assert isinstance(method[key], float), (method["name"], key)
    report = (tmp_path / "report.md").read_text()
    assert "| LLMdoctor beta=0.5 |" in report and "Token rewards:" in report
