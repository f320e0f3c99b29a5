"""Plain references for the text probabilities: whole forwards over prompt + path (no cache), and a brute force that
enumerates every token path of a tiny model spelling a text."""

import math

import torch


def next_token_logprobs_of(model, prompt):
    """One forward per path over prompt + path (no cache): the plain reference the model is queried through."""

    def next_token_logprobs(paths):
        with torch.no_grad():
            rows = [model(torch.tensor([tuple(prompt) + tuple(path)])).logits[0, -1].log_softmax(-1) for path in paths]
        return torch.stack(rows)

    return next_token_logprobs


def sequence_log_prob(model, prompt, path):
    """log p(path | prompt), from one forward."""
    prompt = tuple(prompt)
    with torch.no_grad():
        logprobs = model(torch.tensor([prompt + tuple(path)])).logits[0].log_softmax(-1)
    return sum(float(logprobs[len(prompt) - 1 + position, token]) for position, token in enumerate(path))


def brute_force_prefix_prob(model, prompt, by_id, text):
    """Q(text): every path whose earlier tokens spell a strict prefix of `text` and whose last token reaches past
    its end, each scored by a forward over the whole path."""
    if not text:
        return 1.0
    total = 0.0
    stack = [((), b"")]
    while stack:
        path, spelled = stack.pop()
        for token, spelling in enumerate(by_id):
            if not spelling:
                continue
            longer = spelled + spelling
            if longer.startswith(text):
                total += math.exp(sequence_log_prob(model, prompt, path + (token,)))
            elif text.startswith(longer):
                stack.append((path + (token,), longer))
    return total


def brute_force_log_prob(model, prompt, by_id, text, continuation):
    """log Q(text + continuation) - log Q(text)."""
    return math.log(brute_force_prefix_prob(model, prompt, by_id, text + continuation)) - math.log(
        brute_force_prefix_prob(model, prompt, by_id, text)
    )
