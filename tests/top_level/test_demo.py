"""The demo's prompt split and import surface; `tfpo-hf demo --quick` on the real SmolLM2 patient writes a complete
report (not that the doctor wins)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tfpo_hf.cli import main
from tfpo_hf.demo.arguments import DemoArguments
from tfpo_hf.demo.prompts import split_prompts


# What benchmarks/sweep_quality.py, scripts/demo.py and scripts/evaluate.py import from the pipeline and the package.
PIPELINE_NAMES = (
    "DemoArguments DemoContext DoctorFamily Method build_preference_pairs chat guided_method load_prompts run_demo "
    "score_pairs split_prompts train_doctor train_dpo unguided_method"
).split()


def test_pipeline_and_package_keep_their_public_names():
    import tfpo_hf.demo
    import tfpo_hf.demo.pipeline

    assert all(hasattr(tfpo_hf.demo.pipeline, name) for name in PIPELINE_NAMES)
    assert all(hasattr(tfpo_hf.demo, name) for name in tfpo_hf.demo.__all__)
    assert {"chat", "load_prompts", "run_demo"} <= set(tfpo_hf.demo.__all__)


def test_demo_does_not_import_the_scripts():
    """The CLI layer (`tfpo_hf.scripts`) sits on top of the demo: the demo takes its defaults from the library."""
    code = "import json, sys, tfpo_hf.demo; print(json.dumps(sorted(m for m in sys.modules if 'scripts' in m)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert not [name for name in json.loads(result.stdout.splitlines()[-1]) if name.startswith("tfpo_hf.scripts")]


def test_split_prompts_is_seeded_disjoint_and_sized():
    args = DemoArguments(quick=True)
    pairs, validation, evaluation = split_prompts(args)
    assert (len(pairs), len(validation), len(evaluation)) == (12, 4, 6)
    openings = [prompt[0]["content"] for prompt in pairs + validation + evaluation]
    assert len(set(openings)) == len(openings)
    assert split_prompts(args) == (pairs, validation, evaluation)
    assert split_prompts(DemoArguments(quick=True, seed=1)) != (pairs, validation, evaluation)


@pytest.mark.slow
def test_quick_demo_writes_report_files_with_numbers(tmp_path):
    arguments = ["demo", "--quick", "--choose_guidance_beta", "true", "--frontier_dpo_betas", "0.5"]
    main([*arguments, "--output_dir", str(tmp_path)])
    for name in ("report.md", "results.json", "reward_vs_diversity.png", "token_rewards.html", "token_rewards.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "doctor" / "value_head.safetensors").exists()
    saved = json.loads((tmp_path / "doctor" / "doctor_config.json").read_text())
    assert saved["guidance"] == "ratio" and saved["guidance_reference"] == "patient"
    literal = json.loads((tmp_path / "literal_doctor" / "doctor_config.json").read_text())
    assert literal["guidance"] == "mix" and literal["flow_reference"] == "none"

    results = json.loads((tmp_path / "results.json").read_text())
    choice = results["metadata"]["llmdoctor_beta_choice"]  # chosen on the validation prompts by `choose_beta`
    assert choice["candidates"] == [1.0, 2.0] and choice["beta"] in (1.0, 2.0) and choice["judge"] == "vader"
    assert saved["beta"] == choice["beta"] and saved["beta_choice"]["table"] == choice["table"]
    doctor = f"LLMdoctor beta={choice['beta']:g}"
    names = [m["name"] for m in results["methods"]]
    assert names[0] == "patient (sampling)" and "DPO (TRL, LoRA)" in names and "best-of-2 (judge)" in names
    chosen = results["metadata"]["chosen_betas"]
    assert chosen["LLMdoctor, literal flow"] == 1.0 and chosen["GenARM-style"] in (1.0, 2.0)
    assert f"GenARM-style beta={chosen['GenARM-style']:g}" in names and doctor in names
    assert "LLMdoctor, literal flow beta=1" in names
    dpo = next(method for method in results["methods"] if method["name"] == "DPO (TRL, LoRA)")
    assert (dpo["family"], dpo["beta"]) == ("DPO (TRL, LoRA)", 0.1)  # TRL's strength, on the frontier's DPO line
    [stronger] = [method for method in results["metadata"]["frontier"] if method["family"] == "DPO (TRL, LoRA)"]
    assert (stronger["name"], stronger["beta"]) == ("DPO (TRL, LoRA), DPO beta 0.5", 0.5)
    assert (tmp_path / "dpo_model_beta0.5" / "config.json").is_file()
    validation = results["metadata"]["validation"]
    assert [row["name"] for row in validation] == ["patient (sampling)", "GenARM-style beta=1", "GenARM-style beta=2"]
    for method in results["methods"]:
        for key in ("mean_score", "win_rate", "distinct_2", "self_bleu", "seconds_per_sample"):
            assert isinstance(method[key], float), (method["name"], key)
        low, high = method["score_interval"]
        assert low <= method["mean_score"] <= high
    report = (tmp_path / "report.md").read_text()
    for heading in (
        "## Held-out evaluation",
        "## Head to head",
        "## Targets",
        "## Beta choice on the validation prompts",
        "## LLMdoctor's beta, chosen on the validation prompts",
    ):
        assert heading in report, heading
    assert f"| {doctor} | DPO (TRL, LoRA) |" in report and "Token rewards:" in report


@pytest.mark.slow
def test_a_resumed_run_trains_each_method_as_an_uninterrupted_one(tmp_path):
    """Each method starts from weights of its own seed, not from whatever the steps before it left in the global
    random state: a run stopped after LLMdoctor and resumed trains the literal flow (DPO and GenARM-style follow the
    same rule) exactly as an uninterrupted run, which trained it after LLMdoctor, did."""
    arguments = ["demo", "--quick", "--baselines", "false", "--output_dir", str(tmp_path)]
    main(arguments)
    literal = tmp_path / "literal_doctor"
    uninterrupted = _weights(literal)
    finished = tmp_path / "progress" / "finished.json"
    steps = json.loads(finished.read_text())
    finished.write_text(json.dumps(steps[: steps.index("LLMdoctor training") + 1]))  # stopped after LLMdoctor
    shutil.rmtree(literal)
    shutil.rmtree(tmp_path / "progress" / "generations")
    main([*arguments, "--resume", "true"])
    resumed = _weights(literal)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)


def _weights(folder) -> dict:
    """Every tensor of the safetensors files in `folder`, by file and name."""
    return {
        f"{path.name}:{name}": tensor
        for path in folder.glob("*.safetensors")
        for name, tensor in load_file(path).items()
    }
