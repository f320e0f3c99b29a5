"""Tiny, offline, randomly initialised models and tokenizers for tests, examples and benchmarks.

Nothing here touches the network: the tokenizer is a byte-level BPE without merges (every byte is a
token) built in memory with a ChatML chat template shaped like SmolLM2's, and the models are Llama
causal LMs with a few layers and a hidden size of 32-64. `tiny_bpe_tokenizer` is another family (a
BPE with merges, trained on a few sentences) for cross-tokenizer tests.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, inserting a default system prompt when the conversation has none (as SmolLM2's template does).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(chat_template: bool = True, pad_token: bool = True) -> PreTrainedTokenizerFast:
    """A lossless byte-level tokenizer (3 special tokens + 256 bytes = 259 ids), built offline.

    Special ids: 0 `<|endoftext|>`, 1 `<|im_start|>`, 2 `<|im_end|>` (EOS, and PAD when `pad_token`),
    the same layout as SmolLM2, where PAD cannot be told from EOS by id.
    """
    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(byte_alphabet):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return chatml_tokenizer(backend, chat_template=chat_template, pad_token=pad_token)


def chatml_tokenizer(
    backend: Tokenizer, chat_template: bool = True, pad_token: bool = True
) -> PreTrainedTokenizerFast:
    """`backend` (a `tokenizers.Tokenizer` holding `SPECIAL_TOKENS`) as a transformers tokenizer laid out like
    SmolLM2's: EOS `<|im_end|>` (also PAD when `pad_token`), no BOS, the ChatML template when `chat_template`."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        unk_token=None,
        pad_token="<|im_end|>" if pad_token else None,
        additional_special_tokens=SPECIAL_TOKENS,
    )
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


BPE_CORPUS = [
    "the cat sat on the mat. the cats sat.",
    "café, naïve, déjà vu: 日本語 text",
    "a catalog of cattle and other cats",
    "def add(a, b):\n    return a + b\n",
]


def tiny_bpe_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE *with* merges, trained offline on `BPE_CORPUS` (tokens of several bytes, some holding part
    of a UTF-8 character), with the same special tokens and chat template as `tiny_tokenizer`: a tokenizer of
    another family for cross-tokenizer tests."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(BPE_CORPUS * 20, trainer)
    return chatml_tokenizer(backend)


def tiny_causal_lm(
    vocab_size: int = 259,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    seed: int = 0,
    logit_scale: float = 20.0,
    **config_overrides,
) -> LlamaForCausalLM:
    """A randomly initialised Llama causal LM in eval mode, float32, deterministic for a given `seed`.

    Random init gives near-uniform next-token distributions; the LM head is multiplied by `logit_scale` so a
    patient has visible preferences (use 1.0 for a doctor that starts near uniform).
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=2,
        pad_token_id=2,
        bos_token_id=None,
        tie_word_embeddings=False,
        **config_overrides,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    return model.eval()


def random_causal_lm_like(name_or_path: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A randomly initialised model with the architecture in `name_or_path`'s config (no weights read): costs
    exactly what the real model costs, for benchmarks where the weights cannot travel."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(name_or_path), dtype=dtype).eval()


def tiny_lora_doctor(base, seed: int | None = None, target_modules="all-linear", **lora_kwargs):
    """A LoRA adapter (r = 4) on a copy of `base`. With `seed=None` the adapter is as PEFT initialises it (it adds
    exactly zero: the doctor equals its base); with a seed its `lora_B` weights are random, so it differs. Other
    keyword arguments go to `LoraConfig` (`use_dora=True`, ...)."""
    import copy

    from peft import LoraConfig, get_peft_model

    doctor = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, **lora_kwargs)
    )
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, parameter in doctor.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return doctor.eval()
