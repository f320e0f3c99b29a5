"""TFPOTrainer under `accelerate launch` with two CPU processes (gloo) logs the same metrics as one process."""

import json
import sys
from pathlib import Path

import pytest

from ..helpers import REPO_ROOT
from ..helpers.subprocesses import free_port, run_checked


SCRIPT = "tests.scripts.distributed_train_script"  # run as a module: the repository root is on PYTHONPATH
ACCELERATE_CONFIG = REPO_ROOT / "examples" / "accelerate" / "multi_cpu.yaml"


def run(command: list[str], tmp_path: Path) -> dict:
    result = run_checked(command, cwd=tmp_path, timeout=600)
    line = next(line for line in result.stdout.splitlines() if line.startswith("LOG_HISTORY="))
    return json.loads(line.removeprefix("LOG_HISTORY="))


def test_two_process_cpu_training_logs_the_same_metrics(tmp_path):
    pytest.importorskip("accelerate")
    single = run([sys.executable, "-m", SCRIPT, str(tmp_path / "single")], tmp_path)
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_CONFIG),
        "--main_process_port",
        str(free_port()),
        "--module",
    ]
    double = run(launcher + [SCRIPT, str(tmp_path / "double")], tmp_path)
    assert single["world_size"] == 1 and double["world_size"] == 2
    single_logs = [entry for entry in single["history"] if "loss/subtb" in entry]
    double_logs = [entry for entry in double["history"] if "loss/subtb" in entry]
    assert len(single_logs) == len(double_logs) == 2
    for one, two in zip(single_logs, double_logs):
        assert set(one) == set(two)
        for key in ("loss", "loss/subtb", "loss/value", "logps/accuracies", "num_tokens"):
            assert two[key] == two[key] and abs(two[key]) < float("inf"), key
    # Two processes see twice the examples per step: metrics averaged over both ranks stay the same kind.
    assert 0.0 <= double_logs[-1]["logps/accuracies"] <= 1.0
