"""Guided generation on the tiny models: the prompts, greedy `generate` with the processed scores, and the comparison
of two guided generations (the same tokens and, step by step, the same mixed scores)."""

import torch
from transformers import LogitsProcessorList


PROMPTS = ["Hi", "Tell me a story about a cat.", "Why?", "What is 2 + 2, and why?"]
NEW_TOKENS = 10
ATOL = 1e-4


def encode(tokenizer, prompts):
    """Chat-templated prompts, left padded: `input_ids` and `attention_mask`."""
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def generate(patient, inputs, processor=None, with_scores=False, **kwargs):
    """Greedy by default; the new tokens, and with `with_scores` the processed scores `(rows, steps, vocab)`."""
    kwargs = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "pad_token_id": 2, **kwargs}
    if processor is not None:
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    out = patient.generate(**inputs, **kwargs, output_scores=with_scores, return_dict_in_generate=True)
    new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
    return (new_tokens, torch.stack(out.scores, dim=1)) if with_scores else new_tokens


def assert_same_generation(fast, reference):
    """Same tokens and, step by step, the same mixed scores."""
    assert torch.equal(fast[0], reference[0])
    assert torch.allclose(fast[1], reference[1], atol=ATOL, rtol=0)
