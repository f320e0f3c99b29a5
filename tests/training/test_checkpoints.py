"""Checkpoints of a training run when things go wrong: the best checkpoint loaded at the end, incomplete checkpoints
skipped on resume, and a training run killed inside a checkpoint save (tests/scripts/checkpoint_fault_script.py).

Saving and loading a doctor itself (staging folders, damaged files, LoRA bases) is tested in
tests/doctor/test_saving.py."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tfpo_hf import DoctorModel
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor
from tfpo_hf.training.checkpoints import (
    IncompleteCheckpointError,
    IncompleteCheckpointWarning,
    checkpoint_problem,
    resolve_resume_checkpoint,
)

from ..helpers.disk import saved_and_reloaded, truncate
from ..helpers.tiny_data import scored_dataset
from ..scripts import checkpoint_fault_script as fault_script


def train_doctor(output_dir, resume=None, base=None, **overrides):
    """`fault_script.train_doctor` (6 steps, a checkpoint every 2) with an evaluation set."""
    return fault_script.train_doctor(output_dir, resume, base, eval_dataset=scored_dataset(8, seed=5), **overrides)


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
    if lora:
        tiny_causal_lm(seed=2).save_pretrained(tmp_path / "base")
    trainer, _ = train_doctor(
        tmp_path / "out",
        base=tmp_path / "base" if lora else None,
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
    base = saved_and_reloaded(tiny_causal_lm(seed=2), tmp_path / "base")
    checkpoint = tmp_path / "out" / "checkpoint-2"
    DoctorModel(tiny_lora_doctor(base, seed=1)).save_pretrained(checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({}, checkpoint / name)
    assert checkpoint_problem(checkpoint, adapter=True) is None
    assert checkpoint_problem(checkpoint, adapter=False) == "config.json is missing"
    (checkpoint / "adapter_model.safetensors").unlink()
    assert checkpoint_problem(checkpoint, adapter=True) == "adapter_model.safetensors is missing"


# ------------------------------------------------------------------ 3. killed inside a checkpoint save
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
