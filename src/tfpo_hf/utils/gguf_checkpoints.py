"""Dense safetensors checkpoints made once from GGUF files, cached: the models this package ships as GGUF (the
embedded SmolLM2 patient, the packaged Qwen2.5-Coder pair) load from there in about a second after the first use.

transformers de-quantises a GGUF file on every `from_pretrained` (seconds to minutes) and `save_pretrained` refuses
a GGUF-loaded model, so its state dict is copied into a plain model of the same class and saved under the cache
directory, atomically.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def default_cache_dir() -> Path:
    """Where converted checkpoints are cached: `$TFPO_HF_CACHE`, else `$HF_HOME/tfpo_hf`, else `~/.cache/tfpo_hf`."""
    if "TFPO_HF_CACHE" in os.environ:
        return Path(os.environ["TFPO_HF_CACHE"])
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"]) / "tfpo_hf"
    return Path.home() / ".cache" / "tfpo_hf"


def _dequantized_gguf_kwargs(gguf_path: Path) -> dict:
    """Ask for dense float weights where transformers can keep GGUF blocks packed (it does when `kernels` is set up)."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always de-quantise GGUF files
        return {}
    return {"quantization_config": GgufConfig(gguf_file=gguf_path.name, dequantize=True)}


def convert_gguf(gguf_path: Path, target: Path, prepare: Callable | None = None) -> None:
    """De-quantise the GGUF at `gguf_path` and save it, with its tokenizer, as a plain float32 safetensors checkpoint
    at `target`, atomically (a temporary folder beside it, then a rename); `prepare(model, tokenizer)` may fix them
    first (special tokens the GGUF metadata gets wrong), so the folder is right wherever it is loaded."""
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, **_dequantized_gguf_kwargs(gguf_path)
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy is a plain dense model
    with torch.device("meta"):
        plain_model = type(gguf_model)(config)
    plain_model.load_state_dict(gguf_model.state_dict(), assign=True)  # the same tensors: no second copy in memory
    plain_model.tie_weights()
    plain_model.generation_config = gguf_model.generation_config
    if prepare is not None:
        prepare(plain_model, tokenizer)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp-"))
    plain_model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process converted it first
        if not target.exists():
            raise


def dense_checkpoint(
    gguf_path_of: Callable[[], Path],
    name: str,
    cache_dir: str | os.PathLike | None = None,
    prepare: Callable | None = None,
) -> Path:
    """The folder `<cache_dir>/<name>` of a dense copy of a GGUF model, converted on first use (`convert_gguf`, with
    `prepare`) from the file that `gguf_path_of()` returns (called only then)."""
    target = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / name
    if not (target / "config.json").is_file():
        convert_gguf(Path(gguf_path_of()), target, prepare)
    return target
