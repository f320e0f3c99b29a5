"""Metrics of a set of generations: judge-score win rate, diversity (distinct-n, self-BLEU), length."""

from __future__ import annotations

from collections.abc import Sequence


def win_rate(scores: Sequence[float], baseline_scores: Sequence[float]) -> float:
    """Fraction of paired samples where `scores` beats the baseline, ties counting one half."""
    if len(scores) != len(baseline_scores):
        raise ValueError(f"win_rate needs paired samples, got {len(scores)} and {len(baseline_scores)}.")
    if not scores:
        raise ValueError("win_rate of an empty list is undefined.")
    outcomes = paired_outcomes(scores, baseline_scores)
    return sum(outcomes) / len(outcomes)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of whitespace tokens, pooled over `texts` (0 when there are none)."""
    ngrams = [tuple(words[i : i + n]) for words in (text.split() for text in texts) for i in range(len(words) - n + 1)]
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


def bootstrap_interval(
    values: Sequence[float], clusters: Sequence[int], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`, resampling whole clusters (the prompts: samples of one
    prompt under several seeds are not independent). Deterministic for a given `seed`."""
    import numpy as np

    if len(values) != len(clusters) or not len(values):
        raise ValueError(f"bootstrap_interval needs one cluster id per value, got {len(values)} and {len(clusters)}.")
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(values, dtype=float), minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids))
    picks = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_outcomes(scores: Sequence[float], baseline_scores: Sequence[float]) -> list[float]:
    """1 where `scores` beats the baseline, 0.5 on a tie, 0 otherwise, sample by sample."""
    if len(scores) != len(baseline_scores):
        raise ValueError(f"paired_outcomes needs paired samples, got {len(scores)} and {len(baseline_scores)}.")
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores)]
