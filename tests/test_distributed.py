"""TFPOTrainer under `accelerate launch` with two CPU processes (gloo) logs the same metrics as one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).with_name("distributed_train_script.py")
ACCELERATE_CONFIG = Path(__file__).parents[1] / "examples" / "accelerate" / "multi_cpu.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("LOG_HISTORY="))
    return json.loads(line.removeprefix("LOG_HISTORY="))


def test_two_process_cpu_training_logs_the_same_metrics(tmp_path):
    pytest.importorskip("accelerate")
    single = run([sys.executable, str(SCRIPT), str(tmp_path / "single")], tmp_path)
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_CONFIG),
        "--main_process_port",
        str(free_port()),
    ]
    double = run(launcher + [str(SCRIPT), str(tmp_path / "double")], tmp_path)
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
