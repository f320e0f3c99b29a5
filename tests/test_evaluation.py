"""Evaluation metrics against hand-computed values, and the harness on tiny models."""

import json

import pytest

from tfpo_hf.evaluation import (
    Method,
    VaderJudge,
    best_of_n_generate_fn,
    distinct_n,
    evaluate_methods,
    get_judge,
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
    assert judge("A wonderful, warm and delightful film.") > 0.5 > judge("A dull film.") > judge("A terrible, awful mess.")
    assert get_judge(len) is len
    with pytest.raises(ValueError, match="Unknown judge"):
        get_judge("nope")


def test_best_of_n_keeps_the_judges_favourite():
    def sample(prompts, seed):
        return [f"{p}-{seed}" for p in prompts]

    pick = best_of_n_generate_fn(sample, judge=lambda text: -int(text.split("-")[-1]) if "x" in text else int(text.split("-")[-1]), n=3)
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
    results = evaluate_methods(methods, prompts, judge, reference="greedy")
    by_name = {r.name: r for r in results}
    assert by_name["greedy"].win_rate == 0.5
    assert by_name["constant2"].mean_score == 2.0 and by_name["constant2"].distinct_1 == pytest.approx(1 / 6)
    assert len(by_name["greedy"].texts) == 3 and by_name["greedy"].texts == greedy(prompts, 0)
    table = results_table(results)
    assert table.count("\n") == 4 and "| constant2 | +2.000 |" in table
    write_results_json(results, tmp_path / "results.json", note="x")
    assert json.loads((tmp_path / "results.json").read_text())["methods"][2]["mean_score"] == 2.0
    plot_score_vs_diversity(results, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="reference"):
        evaluate_methods(methods, prompts, judge, reference="missing")
