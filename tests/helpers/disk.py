"""Round trips through disk: a model saved and loaded back (so that a LoRA adapter built on it records a base it can
be reloaded from), and a file cut in half to damage a checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM


def saved_and_reloaded(model, path: str | Path):
    """`model` saved to `path` and loaded back from there (in eval mode)."""
    model.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def truncate(path: Path) -> None:
    """Cut the file at `path` to half its size, as an interrupted write would."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
