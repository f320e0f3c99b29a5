"""`tfpo-hf demo`: the whole pipeline on the embedded SmolLM2 patient (movie-review openings, a VADER judge), with
its prompts (`movie_review_openings.jsonl`), the run (`pipeline`) and the report it writes (`report`)."""

from .pipeline import (
    DemoArguments,
    DoctorRun,
    Method,
    build_preference_pairs,
    chat,
    guided_method,
    load_prompts,
    memoized,
    run_demo,
    score_pairs,
    split_prompts,
    train_doctor,
)


__all__ = [
    "DemoArguments",
    "DoctorRun",
    "Method",
    "build_preference_pairs",
    "chat",
    "guided_method",
    "load_prompts",
    "memoized",
    "run_demo",
    "score_pairs",
    "split_prompts",
    "train_doctor",
]
