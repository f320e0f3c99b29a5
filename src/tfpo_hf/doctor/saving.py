"""What `DoctorModel.save_pretrained` and its loaders need besides the weights: the staging folder of an atomic save
(and the clean-up of those an interrupted save left behind), the atomic rewrite of a saved doctor's settings, the
check that a LoRA doctor's base can be reloaded, and loading one safetensors file with an error that names it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..utils.adapters import base_model_name_or_path, has_adapter
from ..utils.constants import CONFIG_NAME, DOCTOR_CONFIG_NAME
from ..utils.hub import looks_like_local_path, safe_loading_kwargs
from .config import DoctorConfig


STAGING_MARKER = ".tfpo-staging"  # inside every staging folder: which process (host, pid) is writing it
STAGING_NAME = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]+$")  # `.<target>.tmp-<random>`, as `make_staging_folder` names it
EMPTY_STAGING_GRACE_S = 60.0  # an empty, unmarked staging folder younger than this may be a save just starting


def make_staging_folder(target: Path) -> Path:
    """A new staging folder `.<target name>.tmp-<random>` beside `target`, marked with this process's host and pid."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    (staging / STAGING_MARKER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return staging


def save_config_atomically(config: DoctorConfig, save_directory: str | os.PathLike) -> None:
    """Write `config` as the `doctor_config.json` of the existing folder `save_directory` in one `os.replace` (staged
    beside the folder, as `DoctorModel.save_pretrained` stages), so an interrupted write leaves the old file whole."""
    save_directory = Path(save_directory)
    remove_stale_staging_folders(save_directory.parent)
    staging = make_staging_folder(save_directory)
    try:
        config.save_pretrained(staging)
        os.replace(staging / DOCTOR_CONFIG_NAME, save_directory / DOCTOR_CONFIG_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging_folders(parent: str | os.PathLike) -> list[Path]:
    """Delete the staging folders in `parent` that an interrupted save left behind; return those deleted.

    Only folders named `.<name>.tmp-<random>` are considered, and only deleted when they are stale: marked by a
    process of this host that is no longer running, or empty (unmarked) and older than a minute. A folder of a
    running save, of another host, of this very process, or without a marker is left alone.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for entry in parent.iterdir():
        if STAGING_NAME.match(entry.name) and entry.is_dir() and not entry.is_symlink() and _is_stale(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _is_stale(staging: Path) -> bool:
    marker = staging / STAGING_MARKER
    if not marker.is_file():
        empty = not any(staging.iterdir())
        return empty and time.time() - staging.stat().st_mtime > EMPTY_STAGING_GRACE_S
    try:
        owner = json.loads(marker.read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and pid != os.getpid() and not _process_running(pid)


def _process_running(pid: int) -> bool:
    try:
        import psutil
    except ImportError:
        if os.name == "nt":
            return True  # no safe liveness probe: keep the folder
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return psutil.pid_exists(pid)


def check_adapter_base_reloadable(lm: nn.Module, doctor_config: DoctorConfig) -> None:
    """Raise before a LoRA doctor is saved when its adapter could not be put back on its base when loaded.

    A saved adapter records only its base's name or path: an in-memory base (no name, or a path that does not
    exist) or a truncated copy of the patient (whose name is the full-depth patient's) cannot be reloaded.
    """
    if not has_adapter(lm):
        return
    fix = (
        "Merge the adapter into a full-weight doctor first (`doctor.pretrained_model = "
        "doctor.pretrained_model.merge_and_unload()`), or save the base first (`base.save_pretrained(path)`) and "
        "build the doctor on `AutoModelForCausalLM.from_pretrained(path)`."
    )
    if doctor_config.is_truncated_copy(base_model_name_or_path(lm)):
        depth = lm.config.get_text_config().num_hidden_layers
        raise ValueError(
            f"This LoRA doctor's base is a truncated copy of the patient ({depth} layers): the saved adapter would "
            f"be reloaded onto the full-depth patient it records as its base. {fix}"
        )
    # what PEFT writes in adapter_config.json: the name recorded when the adapter was made, else the base's own
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    fallback = base.__dict__.get("name_or_path") or ""
    recorded = [getattr(config, "base_model_name_or_path", None) for config in getattr(lm, "peft_config", {}).values()]
    for name in [name or fallback for name in recorded] or [fallback]:
        problem = _base_problem(str(name))
        if problem:
            raise ValueError(f"This LoRA doctor's base model cannot be reloaded: {problem}. {fix}")


def _base_problem(name: str) -> str | None:
    if not name:
        return "it is an in-memory model with no `name_or_path`"
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return None if os.path.isfile(os.path.join(path, CONFIG_NAME)) else f"{path} holds no {CONFIG_NAME}"
    if looks_like_local_path(name):
        return f"its `name_or_path` {name!r} is not a folder on disk nor a Hub id"
    return None


def load_state_file(module: nn.Module, path: str | os.PathLike, prefix: str = "") -> None:
    """Load the safetensors file `path` (keys starting with `prefix`, which is stripped) into `module`.

    Raises:
        ValueError: naming `path` when it cannot be read or does not hold `module`'s weights.
    """
    try:
        state = load_file(str(path))
        module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ValueError(
            f"{path} could not be loaded ({error}): the file is corrupted or was not saved by this doctor. Re-save "
            "the doctor, or delete the file (a doctor loaded without it starts from a fresh value head)."
        ) from error


def load_lm_weights(lm: nn.Module, checkpoint_dir: Path) -> None:
    """Load the LM part of a doctor saved in `checkpoint_dir` (an adapter for a PEFT `lm`, else full weights) in place.

    Raises:
        ValueError: naming `checkpoint_dir` when its weights cannot be read or do not fit `lm`.
    """
    try:
        safe = safe_loading_kwargs(str(checkpoint_dir), {})  # refuses pickled weights: never `torch.load`
        if hasattr(lm, "peft_config"):
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(lm, load_peft_weights(str(checkpoint_dir)))
        else:
            from transformers import AutoModelForCausalLM

            reloaded = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), dtype=lm.dtype, **safe)
            lm.load_state_dict(reloaded.state_dict())
    except (OSError, SafetensorError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"The LM weights in {checkpoint_dir} could not be loaded ({error}): the checkpoint is incomplete or "
            "corrupted, or was saved by a doctor of another shape. Load another checkpoint, or re-save this one."
        ) from error
