"""Saving, loading and resuming a doctor when things go wrong: the best checkpoint loaded at the end, incomplete
checkpoints skipped on resume, staging folders of interrupted saves cleaned up, loading errors that name the file,
LoRA doctors whose base could not be reloaded refused, and a training run killed inside a checkpoint save."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import checkpoint_fault_script as fault_script
import pytest
import torch
from safetensors.torch import load_file
from tfpo_fixtures import scored_dataset
from transformers import AutoModelForCausalLM, TrainerCallback

from tfpo_hf import DoctorModel, TFPOConfig, TFPOTrainer
from tfpo_hf.doctor.saving import STAGING_MARKER, remove_stale_staging_folders
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer
from tfpo_hf.training.checkpoints import (
    IncompleteCheckpointError,
    IncompleteCheckpointWarning,
    checkpoint_problem,
    resolve_resume_checkpoint,
)


def make_args(output_dir, **overrides):
    defaults = dict(
        output_dir=str(output_dir),
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        per_device_train_batch_size=4,
        max_steps=6,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    return TFPOConfig(**{**defaults, **overrides})


class RecordStart(TrainerCallback):
    """Records the global step training starts from (the checkpoint's step when it resumes)."""

    start_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step


def train_doctor(output_dir, resume=None, doctor=None, peft_config=None, **overrides):
    start = RecordStart()
    trainer = TFPOTrainer(
        doctor if doctor is not None else DoctorModel(tiny_causal_lm(seed=2)),
        args=make_args(output_dir, **overrides),
        train_dataset=scored_dataset(16),
        eval_dataset=scored_dataset(8, seed=5),
        processing_class=tiny_tokenizer(),
        peft_config=peft_config,
        callbacks=[start],
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, start.start_step


def assert_same_weights(actual: dict, expected: dict, atol: float = 1e-6):
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.allclose(actual[name], tensor, atol=atol, rtol=0), name


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A full-weight doctor trained 6 steps with checkpoints 2, 4, 6, and its final weights."""
    output_dir = tmp_path_factory.mktemp("run") / "out"
    trainer, _ = train_doctor(output_dir)
    return output_dir, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of `trained_run`'s output folder that a test may damage."""
    shutil.copytree(trained_run[0], tmp_path / "out")
    return tmp_path / "out"


# ------------------------------------------------------------------ 1. the best model at the end
@pytest.mark.parametrize("lora", [False, True])
def test_load_best_model_at_end_loads_the_best_checkpoint(tmp_path, lora):
    peft_config, doctor = None, None
    if lora:
        from peft import LoraConfig

        tiny_causal_lm(seed=2).save_pretrained(tmp_path / "base")
        doctor = DoctorModel(AutoModelForCausalLM.from_pretrained(tmp_path / "base"))
        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer, _ = train_doctor(
        tmp_path / "out",
        doctor=doctor,
        peft_config=peft_config,
        eval_strategy="steps",
        eval_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    )
    best = trainer.state.best_model_checkpoint
    evals = {e["step"]: e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e}
    assert best == str(tmp_path / "out" / f"checkpoint-{min(evals, key=evals.get)}")
    assert not best.endswith("checkpoint-6"), "the test needs a best checkpoint that is not the last one"
    expected = DoctorModel.from_pretrained(best).state_dict()
    last = DoctorModel.from_pretrained(tmp_path / "out" / "checkpoint-6").state_dict()
    actual = trainer.model.state_dict()
    assert_same_weights(actual, expected, atol=0)
    assert any(not torch.equal(actual[name], last[name]) for name in actual if "lora_B" in name or not lora)


# ------------------------------------------------------------------ 2. resuming only from a complete checkpoint
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "trainer_state.json is missing": lambda c: (c / "trainer_state.json").unlink(),
    "model.safetensors is missing": lambda c: (c / "model.safetensors").unlink(),
    "value_head.safetensors is missing": lambda c: (c / "value_head.safetensors").unlink(),
    "value_head.safetensors cannot be read": lambda c: truncate(c / "value_head.safetensors"),
    "optimizer.pt is truncated": lambda c: truncate(c / "optimizer.pt"),
    "trainer_state.json cannot be read": lambda c: (c / "trainer_state.json").write_text("{"),
}


@pytest.mark.parametrize("problem", list(DAMAGES))
def test_incomplete_checkpoint_is_skipped_or_refused(run_copy, problem):
    DAMAGES[problem](run_copy / "checkpoint-6")
    assert checkpoint_problem(run_copy / "checkpoint-6", adapter=False).startswith(problem)
    with pytest.warns(IncompleteCheckpointWarning, match=f"Skipping checkpoint-6 .*{problem}.*checkpoint-4"):
        assert resolve_resume_checkpoint(True, run_copy, adapter=False) == str(run_copy / "checkpoint-4")
    with pytest.raises(IncompleteCheckpointError, match=f"checkpoint-6: {problem}"):
        resolve_resume_checkpoint(str(run_copy / "checkpoint-6"), run_copy, adapter=False)


def test_resume_skips_an_incomplete_checkpoint_and_matches_the_uninterrupted_run(trained_run, run_copy):
    (run_copy / "checkpoint-6" / "trainer_state.json").unlink()
    with pytest.warns(IncompleteCheckpointWarning, match="checkpoint-6"):
        trainer, start_step = train_doctor(run_copy, resume=True)
    assert start_step == 4
    assert_same_weights(trainer.model.state_dict(), trained_run[1])


def test_resume_without_a_complete_checkpoint_raises(run_copy, tmp_path):
    for step in (2, 4, 6):
        (run_copy / f"checkpoint-{step}" / "value_head.safetensors").unlink()
    with pytest.raises(IncompleteCheckpointError, match="No complete checkpoint.*checkpoint-6: value_head"):
        resolve_resume_checkpoint(True, run_copy, adapter=False)
    with pytest.raises(IncompleteCheckpointError, match="No valid checkpoint found"):
        resolve_resume_checkpoint(True, tmp_path / "empty", adapter=False)
    with pytest.raises(FileNotFoundError, match="path .*checkpoint-8 does not exist"):
        resolve_resume_checkpoint(str(run_copy / "checkpoint-8"), run_copy, adapter=False)
    assert resolve_resume_checkpoint(None, run_copy, adapter=False) is None


def test_adapter_checkpoint_needs_its_adapter_weights(tmp_path):
    tiny_causal_lm(seed=2).save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    checkpoint = tmp_path / "out" / "checkpoint-2"
    DoctorModel(tiny_lora_doctor(base, seed=1)).save_pretrained(checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({}, checkpoint / name)
    assert checkpoint_problem(checkpoint, adapter=True) is None
    assert checkpoint_problem(checkpoint, adapter=False) == "config.json is missing"
    (checkpoint / "adapter_model.safetensors").unlink()
    assert checkpoint_problem(checkpoint, adapter=True) == "adapter_model.safetensors is missing"


# ------------------------------------------------------------------ 3. staging folders of interrupted saves
def make_staging(parent: Path, name: str, owner: dict | None, files: bool = True) -> Path:
    folder = parent / name
    folder.mkdir()
    if owner is not None:
        (folder / STAGING_MARKER).write_text(json.dumps(owner))
    if files:
        (folder / "model.safetensors").write_bytes(b"partial")
    return folder


def test_only_stale_staging_folders_are_deleted(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"host": socket.gethostname(), "pid": int(finished.stdout)}
    stale = [make_staging(tmp_path, ".doctor.tmp-dead1", dead), make_staging(tmp_path, ".ckpt.tmp-empty", None, False)]
    old = time.time() - 3600
    os.utime(stale[1], (old, old))
    kept = [
        make_staging(tmp_path, ".doctor.tmp-alive", {"host": socket.gethostname(), "pid": os.getppid()}),
        make_staging(tmp_path, ".doctor.tmp-mine", {"host": socket.gethostname(), "pid": os.getpid()}),
        make_staging(tmp_path, ".doctor.tmp-remote", {**dead, "host": "another-host"}),
        make_staging(tmp_path, ".doctor.tmp-unmarked", None),
        make_staging(tmp_path, ".doctor.tmp-young", None, False),
        make_staging(tmp_path, "doctor.tmp-nodot", dead),
        make_staging(tmp_path, ".doctor.tmp", dead),
    ]
    (tmp_path / ".file.tmp-abc").write_text("not a folder")
    DoctorModel(tiny_causal_lm(seed=2)).save_pretrained(tmp_path / "doctor")
    assert not any(folder.exists() for folder in stale)
    assert all(folder.is_dir() for folder in kept) and (tmp_path / ".file.tmp-abc").is_file()
    assert not (tmp_path / "doctor" / STAGING_MARKER).exists(), "the marker stays in the staging folder"
    assert remove_stale_staging_folders(tmp_path / "missing") == []


# ------------------------------------------------------------------ 4. loading errors that name the file
@pytest.mark.parametrize("path", ["./no-such-doctor", "/no/such/doctor", "no/such/doctor", "~/no-such-doctor"])
def test_missing_local_path_is_named(path):
    with pytest.raises(FileNotFoundError, match="path .*no-such-doctor|path .*no/such/doctor"):
        DoctorModel.from_pretrained(path)


def test_corrupted_doctor_files_are_named(tmp_path):
    DoctorModel(tiny_causal_lm(seed=2)).save_pretrained(tmp_path / "doctor")
    head = tmp_path / "doctor" / "value_head.safetensors"
    intact = head.read_bytes()
    truncate(head)
    for load in (DoctorModel.from_pretrained, DoctorModel(tiny_causal_lm(seed=3)).load_doctor_weights):
        with pytest.raises(ValueError, match="value_head.safetensors could not be loaded.*[Rr]e-save.*delete"):
            load(tmp_path / "doctor")
    head.write_bytes(intact)
    config = tmp_path / "doctor" / "doctor_config.json"
    for content in ("{not json", "[1, 2]", b"\xff\xfe"):
        config.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ValueError, match="doctor_config.json .*re-save the doctor or delete the file"):
            DoctorModel.from_pretrained(tmp_path / "doctor")
    config.unlink()
    head.unlink()
    with pytest.raises(FileNotFoundError, match="value_head.safetensors does not exist"):
        DoctorModel(tiny_causal_lm(seed=3)).load_doctor_weights(tmp_path / "doctor")


# ------------------------------------------------------------------ 5. a LoRA doctor's base must be reloadable
def test_lora_doctor_on_an_unreloadable_base_is_refused_before_writing(tmp_path):
    in_memory = tiny_causal_lm(seed=2)
    missing = tiny_causal_lm(seed=2)
    missing.name_or_path = missing.config.name_or_path = str(tmp_path / "deleted-base")  # as from_pretrained sets
    for base, why in ((in_memory, "in-memory model"), (missing, "deleted-base' is not a folder on disk")):
        with pytest.raises(ValueError, match=f"cannot be reloaded: .*{why}.*merge_and_unload.*save the base first"):
            DoctorModel(tiny_lora_doctor(base, seed=1)).save_pretrained(tmp_path / "doctor")
    tiny_causal_lm(seed=2, num_hidden_layers=4).save_pretrained(tmp_path / "patient")
    patient = AutoModelForCausalLM.from_pretrained(tmp_path / "patient")
    truncated = DoctorModel.from_patient(patient, 2)
    truncated.pretrained_model = tiny_lora_doctor(truncated.pretrained_model, seed=1)
    with pytest.raises(ValueError, match="truncated copy of the patient.*merge_and_unload"):
        truncated.save_pretrained(tmp_path / "doctor")
    assert list(tmp_path.iterdir()) == [tmp_path / "patient"], "nothing written"
    truncated.pretrained_model = truncated.pretrained_model.merge_and_unload()  # the fix the error gives
    truncated.save_pretrained(tmp_path / "doctor")
    hub_named = tiny_causal_lm(seed=2)
    # a Hub id: reloadable as far as can be told offline
    hub_named.name_or_path = hub_named.config.name_or_path = "some-org/some-model"
    DoctorModel(tiny_lora_doctor(hub_named, seed=1)).save_pretrained(tmp_path / "hub-doctor")


# ------------------------------------------------------------------ 6. killed inside a checkpoint save
def test_sigkill_during_a_checkpoint_save_then_resume_matches_the_uninterrupted_run(tmp_path):
    """Both cases (full weights, LoRA) run side by side: the killed runs, then the resumed runs, in subprocesses;
    the uninterrupted reference runs in this process meanwhile."""
    tiny_causal_lm(seed=2).save_pretrained(tmp_path / "base")
    cases = {"full": None, "lora": tmp_path / "base"}
    killed = {
        case: fault_script.start(
            tmp_path / case, tmp_path / f"{case}.safetensors", base, fault=tmp_path / f"{case}.signal"
        )
        for case, base in cases.items()
    }
    for case, process in killed.items():
        fault_script.kill_inside_the_save(process, tmp_path / f"{case}.signal")
        interrupted = tmp_path / case / "checkpoint-4"
        assert interrupted.is_dir() and not (interrupted / "trainer_state.json").exists()
        assert list((tmp_path / case).glob(".checkpoint-4.tmp-*")), "the killed save left its staging folder"
    resumed = {
        case: fault_script.start(tmp_path / case, tmp_path / f"{case}.safetensors", base, resume=True)
        for case, base in cases.items()
    }
    for case, base in cases.items():
        fault_script.train(str(tmp_path / f"{case}-ref"), str(tmp_path / f"{case}-ref.safetensors"), base, False)
    for case, process in resumed.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        assert "Skipping checkpoint-4" in stderr and "trainer_state.json is missing" in stderr
        assert json.loads((tmp_path / f"{case}.safetensors.json").read_text()) == {"start_step": 2}
        assert not list((tmp_path / case).glob(".*.tmp-*")), "the staging folder is cleaned up"
        assert checkpoint_problem(tmp_path / case / "checkpoint-4", adapter=case == "lora") is None
        expected = load_file(tmp_path / f"{case}-ref.safetensors")
        assert_same_weights(load_file(tmp_path / f"{case}.safetensors"), expected)
