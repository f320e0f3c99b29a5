"""Round trips through disk: a model saved and loaded back (so that a LoRA adapter built on it records a base it can
be reloaded from), models saved with their tokenizers as a run's inputs, a file cut in half to damage a checkpoint, and a checkpoint whose weights are pickled."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def saved_and_reloaded(model, path: str | Path):
    """`model` saved to `path` and loaded back from there (in eval mode)."""
    model.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def saved_model_folders(folder: Path, models: dict[str, tuple]) -> dict[str, str]:
    """Each `role: (model, tokenizer)` saved together in `folder / role`; returns the folders by role."""
    folders = {}
    for role, (model, tokenizer) in models.items():
        folders[role] = str(folder / role)
        model.save_pretrained(folders[role])
        tokenizer.save_pretrained(folders[role])
    return folders


def truncate(path: Path) -> None:
    """Cut the file at `path` to half its size, as an interrupted write would."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def pickle_weights(folder: Path, name: str = "pytorch_model.bin") -> Path:
    """Replace the safetensors weights of the checkpoint in `folder` (not the value head's) by the same tensors
    pickled under `name`, as old or hostile checkpoints come; returns the pickled file."""
    (source,) = [path for path in folder.glob("*.safetensors") if path.name != "value_head.safetensors"]
    torch.save(load_file(source), folder / name)
    source.unlink()
    return folder / name


def spy_on_torch_load(monkeypatch) -> list[str]:
    """The files `torch.load` is asked to unpickle from now on (it still loads them)."""
    calls, original = [], torch.load

    def load(file, *args, **kwargs):
        calls.append(str(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return calls
