"""Train a tiny doctor with checkpoints, for the fault-injection test in tests/training/test_checkpoints.py.

    PYTHONPATH=REPO_ROOT python -m tests.scripts.checkpoint_fault_script OUTPUT_DIR RESULT [--base BASE_DIR] [--resume]

Trains 6 steps with a checkpoint every 2 (a full-weight doctor, or LoRA on the model saved in BASE_DIR), resuming
with `resume_from_checkpoint=True` when `--resume` is given. At the end it writes the doctor's state dict to
RESULT (safetensors) and the step training started from to RESULT + ".json". `train_doctor` is the same run in the
calling process, for the other checkpoint tests.

Fault injection: when `TFPO_FAULT_CHECKPOINT` names a checkpoint folder (e.g. `checkpoint-4`), the save of that
checkpoint stops after two of its files have been moved in from the staging folder: the script then creates the
file `TFPO_FAULT_SIGNAL` and sleeps, for the parent to kill it with SIGKILL there, inside the save. `start` and
`kill_inside_the_save` are the parent's side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, TrainerCallback

from tfpo_hf import DoctorModel
from tfpo_hf.testing import tiny_causal_lm

from ..helpers.subprocesses import offline_env
from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args, tiny_trainer


MAX_STEPS = 6
SAVE_STEPS = 2
FILES_BEFORE_FAULT = 2
CHECKPOINTED = {"max_steps": MAX_STEPS, "save_strategy": "steps", "save_steps": SAVE_STEPS, "learning_rate": 1e-3}


def install_fault(checkpoint_name: str, signal_file: str) -> None:
    """Make `os.replace` hang once FILES_BEFORE_FAULT files of `checkpoint_name` have left their staging folder."""
    real_replace = os.replace
    moved = []

    def replace_then_hang(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(src).parent.name.startswith(f".{checkpoint_name}.tmp-"):
            moved.append(dst)
            if len(moved) == FILES_BEFORE_FAULT:
                Path(signal_file).write_text(str(os.getpid()))
                time.sleep(120)
                os._exit(3)  # never reached when the parent kills this process as it should

    os.replace = replace_then_hang


class RecordStart(TrainerCallback):
    """Records the global step training starts from (the checkpoint's step when it resumes)."""

    start_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step


def train_doctor(output_dir, resume=None, base=None, eval_dataset=None, **overrides):
    """Train (or resume) the tiny doctor, 6 steps with a checkpoint every 2: a full-weight doctor, or with `base` (a
    folder) LoRA on the causal LM saved there. Returns the trainer and the step training started from."""
    torch.manual_seed(0)
    peft_config = None
    if base is None:
        doctor = DoctorModel(tiny_causal_lm(seed=2))
    else:
        doctor = DoctorModel(AutoModelForCausalLM.from_pretrained(base))
        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    start = RecordStart()
    trainer = tiny_trainer(
        make_args(output_dir, **{**CHECKPOINTED, **overrides}),
        scored_dataset(16),
        doctor,
        eval_dataset=eval_dataset,
        peft_config=peft_config,
        callbacks=[start],
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, start.start_step


def train(output_dir: str, result: str, base: str | None, resume: bool) -> None:
    """Train (or resume) the tiny doctor and write its final weights and starting step."""
    torch.set_num_threads(1)
    trainer, start_step = train_doctor(
        output_dir, resume=True if resume else None, base=base, learning_rate=1e-2 if base else 1e-3
    )
    state = {name: tensor.detach().contiguous() for name, tensor in trainer.model.state_dict().items()}
    save_file(state, result)
    Path(result + ".json").write_text(json.dumps({"start_step": start_step}))


def start(output_dir, result, base=None, resume: bool = False, fault=None) -> subprocess.Popen:
    """Run this script in a fresh process (offline); with `fault`, a signal file, it hangs inside `checkpoint-4`'s
    save once it has created that file."""
    command = [sys.executable, "-m", __name__, str(output_dir), str(result)]
    command += ["--base", str(base)] if base else []
    command += ["--resume"] if resume else []
    env = offline_env()
    env.pop("TFPO_FAULT_CHECKPOINT", None)
    if fault is not None:
        env |= {"TFPO_FAULT_CHECKPOINT": "checkpoint-4", "TFPO_FAULT_SIGNAL": str(fault)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_inside_the_save(process: subprocess.Popen, signal_file: Path, timeout: float = 120.0) -> None:
    """Wait until `process` (started with `fault=signal_file`) hangs inside the save, then SIGKILL it."""
    deadline = time.monotonic() + timeout
    while not signal_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the script never reached the checkpoint save:\n{process.communicate()[1][-3000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    parser.add_argument("result")
    parser.add_argument("--base", default=None, help="train LoRA on the causal LM saved in this folder")
    parser.add_argument("--resume", action="store_true")
    options = parser.parse_args(argv)
    if os.environ.get("TFPO_FAULT_CHECKPOINT"):
        install_fault(os.environ["TFPO_FAULT_CHECKPOINT"], os.environ["TFPO_FAULT_SIGNAL"])
    train(options.output_dir, options.result, options.base, options.resume)


if __name__ == "__main__":
    main()
