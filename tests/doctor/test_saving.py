"""Saving and loading a doctor when things go wrong: staging folders of interrupted saves cleaned up, loading errors
that name the file, and LoRA doctors whose base could not be reloaded refused before anything is written.

Checkpoints of a training run (resuming, the best checkpoint, a run killed inside a save) are tested in
tests/training/test_checkpoints.py."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfpo_hf import DoctorModel
from tfpo_hf.doctor.saving import STAGING_MARKER, remove_stale_staging_folders
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor

from ..helpers.disk import saved_and_reloaded, truncate


# ------------------------------------------------------------------ 1. staging folders of interrupted saves
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


# ------------------------------------------------------------------ 2. loading errors that name the file
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


# ------------------------------------------------------------------ 3. a LoRA doctor's base must be reloadable
def test_lora_doctor_on_an_unreloadable_base_is_refused_before_writing(tmp_path):
    in_memory = tiny_causal_lm(seed=2)
    missing = tiny_causal_lm(seed=2)
    missing.name_or_path = missing.config.name_or_path = str(tmp_path / "deleted-base")  # as from_pretrained sets
    for base, why in ((in_memory, "in-memory model"), (missing, "deleted-base' is not a folder on disk")):
        with pytest.raises(ValueError, match=f"cannot be reloaded: .*{why}.*merge_and_unload.*save the base first"):
            DoctorModel(tiny_lora_doctor(base, seed=1)).save_pretrained(tmp_path / "doctor")
    patient = saved_and_reloaded(tiny_causal_lm(seed=2, num_hidden_layers=4), tmp_path / "patient")
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
