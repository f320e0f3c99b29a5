"""The demo's tasks: what the prompts ask, the patient's two faces for stage 1 and the judge. `movie_review` (the
default) continues movie-review openings warmly, judged by VADER; `code` writes small Python functions, judged by
running them on hidden test cases (`PythonTestsJudge`), a task that suits the weak-to-strong pair of code models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..evaluation.judges import Judge


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo.

    Args:
        name: its `--task` name.
        summary: what the report says of it ("Task: {summary}").
        score_meaning: what a higher judge score means, for the report.
        positive_face: the system prompt of the patient's positive face (stage 1).
        negative_face: the system prompt of its negative face.
        judge: the name of its judge (`--judge`'s default).
        make_judge: builds that judge.
        messages: the task's user messages (320, in a fixed order; `split_prompts` shuffles them).
        max_new_tokens: tokens per completion by default.
        quick_max_new_tokens: tokens per completion with `--quick`.
    """

    name: str
    summary: str
    score_meaning: str
    positive_face: str
    negative_face: str
    judge: str
    make_judge: Callable[[], Judge]
    messages: Callable[[], list[str]]
    max_new_tokens: int
    quick_max_new_tokens: int


def _movie_review_messages() -> list[str]:
    from .prompts import PROMPT_TEMPLATE, load_prompts

    return [PROMPT_TEMPLATE.format(opening=row["opening"]) for row in load_prompts()]


def _vader() -> Judge:
    from ..evaluation.judges import VaderJudge

    return VaderJudge()


def _code_messages() -> list[str]:
    from .code_problems import code_problems

    return [problem.message for problem in code_problems()]


def _python_tests() -> Judge:
    from ..evaluation.code_judge import PythonTestsJudge
    from .code_problems import code_problems

    return PythonTestsJudge(code_problems())


MOVIE_REVIEW = DemoTask(
    name="movie_review",
    summary="continue a movie-review opening warmly",
    score_meaning="higher is more positive",
    positive_face="You are a warm, enthusiastic film critic. Your writing is positive, kind and full of praise.",
    negative_face="You are a harsh, gloomy film critic. Your writing is negative, dismissive and full of complaints.",
    judge="vader",
    make_judge=_vader,
    messages=_movie_review_messages,
    max_new_tokens=32,
    quick_max_new_tokens=12,
)
CODE = DemoTask(
    name="code",
    summary="write a small Python function from a one-sentence specification (`demo/code_problems.py`)",
    score_meaning="the fraction of the problem's 10 hidden test cases the function passes, run in a separate process",
    positive_face=(
        "You are a meticulous Python expert. Your code is correct, follows the specification to the letter and "
        "handles every edge case."
    ),
    negative_face=(
        "You are a sloppy, careless programmer. Your code misreads the specification, ignores edge cases and is "
        "often wrong."
    ),
    judge="python_tests",
    make_judge=_python_tests,
    messages=_code_messages,
    max_new_tokens=96,
    quick_max_new_tokens=40,  # a whole small function
)
TASKS = {task.name: task for task in (MOVIE_REVIEW, CODE)}
