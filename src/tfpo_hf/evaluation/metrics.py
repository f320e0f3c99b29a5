"""Metrics of a set of generations: judge-score win rate, diversity (distinct-n, self-BLEU), length."""

from __future__ import annotations

from collections.abc import Sequence


def win_rate(scores: Sequence[float], baseline_scores: Sequence[float]) -> float:
    """Fraction of paired samples where `scores` beats the baseline, ties counting one half."""
    if len(scores) != len(baseline_scores):
        raise ValueError(f"win_rate needs paired samples, got {len(scores)} and {len(baseline_scores)}.")
    if not scores:
        raise ValueError("win_rate of an empty list is undefined.")
    outcomes = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores)]
    return sum(outcomes) / len(outcomes)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of whitespace tokens, pooled over `texts` (0 when there are none)."""
    ngrams = [
        tuple(words[i : i + n]) for words in (text.split() for text in texts) for i in range(len(words) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def self_bleu(texts: Sequence[str]) -> float:
    """Mean sentence BLEU (sacrebleu, effective order, 0-100) of each text against all the others: higher means
    the texts repeat each other more. 0 for fewer than two texts."""
    from sacrebleu.metrics import BLEU

    if len(texts) < 2:
        return 0.0
    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(text, list(texts[:i]) + list(texts[i + 1 :])).score for i, text in enumerate(texts)]
    return sum(scores) / len(scores)
