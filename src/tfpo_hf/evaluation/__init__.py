"""Evaluation harness: judges, generation methods, quality and diversity metrics, reports."""

from .harness import Method, MethodResult, best_of_n_generate_fn, evaluate_methods, head_to_head, patient_generate_fn
from .judges import VaderJudge, get_judge
from .metrics import bootstrap_interval, distinct_n, paired_outcomes, self_bleu, win_rate
from .report import plot_score_vs_diversity, results_table, write_results_json


__all__ = [
    "Method",
    "MethodResult",
    "VaderJudge",
    "best_of_n_generate_fn",
    "bootstrap_interval",
    "distinct_n",
    "evaluate_methods",
    "get_judge",
    "head_to_head",
    "paired_outcomes",
    "patient_generate_fn",
    "plot_score_vs_diversity",
    "results_table",
    "self_bleu",
    "win_rate",
    "write_results_json",
]
