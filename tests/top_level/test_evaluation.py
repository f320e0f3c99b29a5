"""Evaluation metrics against hand-computed values, and the harness on tiny models."""

import json

import pytest

from tfpo_hf.evaluation import (
    Method,
    VaderJudge,
    best_of_n_generate_fn,
    bootstrap_interval,
    distinct_n,
    evaluate_methods,
    get_judge,
    head_to_head,
    patient_generate_fn,
    plot_score_vs_diversity,
    results_table,
    self_bleu,
    win_rate,
    write_results_json,
)
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer


def test_win_rate_counts_ties_as_half():
    assert win_rate([1, 2, 3, 0], [0, 2, 4, 0]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    with pytest.raises(ValueError, match="paired"):
        win_rate([1, 2], [1])


def test_distinct_n_by_hand():
    texts = ["a b a b", "a c"]
    # unigrams: a b a b a c -> {a, b, c} = 3 of 6; bigrams: ab ba ab ac -> {ab, ba, ac} = 3 of 4
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)
    assert distinct_n(["a"], 2) == 0.0


def test_self_bleu_is_high_for_copies_and_low_for_unrelated_texts():
    copies = ["the cat sat on the mat today"] * 3
    unrelated = ["the cat sat on the mat today", "quantum fields oscillate wildly", "buy fresh bread here"]
    assert self_bleu(copies) == pytest.approx(100.0)
    assert self_bleu(unrelated) < 10.0
    assert self_bleu(["only one"]) == 0.0


def test_vader_judge_orders_sentiment_and_named_lookup():
    judge = get_judge("vader")
    assert isinstance(judge, VaderJudge)
    assert (
        judge("A wonderful, warm and delightful film.")
        > 0.5
        > judge("A dull film.")
        > judge("A terrible, awful mess.")
    )
    assert get_judge(len) is len
    with pytest.raises(ValueError, match="Unknown judge"):
        get_judge("nope")


def test_best_of_n_keeps_the_judges_favourite():
    def sample(prompts, seed):
        return [f"{p}-{seed}" for p in prompts]

    pick = best_of_n_generate_fn(
        sample, judge=lambda text: -int(text.split("-")[-1]) if "x" in text else int(text.split("-")[-1]), n=3
    )
    assert pick(["a", "x"], seed=10) == ["a-12", "x-10"]


def test_harness_scores_methods_on_the_same_prompts(tmp_path):
    model, tokenizer = tiny_causal_lm(), tiny_tokenizer()
    prompts = ["hello", "tell me", "why"]
    greedy = patient_generate_fn(model, tokenizer, batch_size=2, do_sample=False, max_new_tokens=5)
    methods = [
        Method("greedy", greedy),
        Method("constant", lambda ps, seed: ["good"] * len(ps), family="sweep", beta=1.0),
        Method("constant2", lambda ps, seed: ["good good"] * len(ps), family="sweep", beta=2.0),
    ]
    judge = lambda text: float(text.count("good"))  # noqa: E731
    results = evaluate_methods(methods, prompts, judge, baseline="greedy")
    by_name = {r.name: r for r in results}
    assert by_name["greedy"].win_rate == 0.5
    assert by_name["constant2"].mean_score == 2.0 and by_name["constant2"].distinct_1 == pytest.approx(1 / 6)
    assert len(by_name["greedy"].texts) == 3 and by_name["greedy"].texts == greedy(prompts, 0)
    table = results_table(results)
    assert table.count("\n") == 4 and "| constant2 | +2.000 [+2.00, +2.00] | 1.00 [1.00, 1.00] |" in table
    write_results_json(results, tmp_path / "results.json", note="x")
    assert json.loads((tmp_path / "results.json").read_text())["methods"][2]["mean_score"] == 2.0
    plot_score_vs_diversity(results, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="baseline"):
        evaluate_methods(methods, prompts, judge, baseline="missing")


def test_bootstrap_interval_resamples_prompts_and_covers_the_mean():
    values = [1.0, 0.0] * 50  # 100 prompts
    low, high = bootstrap_interval(values, list(range(100)))
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.05, abs=0.03)  # about +-1.96 standard errors
    assert bootstrap_interval(values, list(range(100))) == (low, high)  # seeded
    # Two seeds of the same prompts are one cluster each: identical copies add no information.
    doubled = bootstrap_interval(values + values, list(range(100)) * 2)
    assert doubled == pytest.approx((low, high), abs=0.02)
    assert bootstrap_interval([3.0, 3.0], [0, 1]) == (3.0, 3.0)
    with pytest.raises(ValueError, match="one cluster id per value"):
        bootstrap_interval([1.0], [0, 1])


def test_seeds_pair_samples_and_head_to_head_counts_ties_as_half():
    prompts = ["a", "b", "c"]
    by_seed = {0: [1.0, 0.0, 2.0], 1: [0.0, 0.0, 2.0]}
    methods = [
        Method("reference", lambda ps, seed: ["x"] * len(ps)),
        Method("seeded", lambda ps, seed: ["s" * int(by_seed[seed][i]) for i in range(len(ps))]),
    ]
    results = evaluate_methods(methods, prompts, judge=len, baseline="reference", seeds=[0, 1])
    reference, seeded = results
    assert seeded.scores == [1.0, 0.0, 2.0, 0.0, 0.0, 2.0] and seeded.prompt_ids == [0, 1, 2, 0, 1, 2]
    # reference scores 1 everywhere: wins at (0,2) and (1,2), ties at (0,0): (2 + 0.5) / 6
    assert seeded.win_rate == pytest.approx(2.5 / 6)
    rate, low, high = head_to_head(seeded, reference)
    assert rate == pytest.approx(2.5 / 6) and low <= rate <= high
    assert head_to_head(reference, seeded)[0] == pytest.approx(1 - 2.5 / 6)


def test_generations_are_kept_and_reused_for_the_same_prompts_and_seeds(tmp_path):
    """With `cache_dir`, a method's texts are written once they exist and read back by a later call with the same
    prompts and seeds (a resumed evaluation does not generate again); other prompts or seeds generate anew."""
    calls = []

    def generate(prompts, seed):
        calls.append((tuple(prompts), seed))
        return [f"{prompt} {seed} good" for prompt in prompts]

    method = Method("a method / with odd characters", generate)
    first = evaluate_methods([method], ["p1", "p2"], len, method.name, seeds=(0, 1), cache_dir=tmp_path)
    again = evaluate_methods([method], ["p1", "p2"], len, method.name, seeds=(0, 1), cache_dir=tmp_path)
    assert len(calls) == 2 and again[0].texts == first[0].texts == ["p1 0 good", "p2 0 good", "p1 1 good", "p2 1 good"]
    assert [path.name for path in tmp_path.iterdir()] == ["a_method_with_odd_characters.json"]
    evaluate_methods([method], ["p1", "p3"], len, method.name, seeds=(0, 1), cache_dir=tmp_path)
    evaluate_methods([method], ["p1", "p3"], len, method.name, seeds=(0,), cache_dir=tmp_path)
    assert len(calls) == 5  # 2 + new prompts (2 seeds) + a new seed list (1 seed)


def test_library_versions_are_the_installed_ones(monkeypatch):
    import importlib.metadata

    from tfpo_hf.evaluation import report

    assert report.library_versions()["transformers"] == importlib.metadata.version("transformers")
    monkeypatch.setattr(report, "LIBRARIES", ("torch", "no-such-library-here"))
    assert report.library_versions() == {
        "torch": importlib.metadata.version("torch"),
        "no-such-library-here": "not installed",
    }
