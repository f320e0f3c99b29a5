"""Judges: callables from text to a score. Any `Callable[[str], float]` works; a judge that scores a text against
its prompt (a code judge running the requested function) takes it as a `prompt` keyword; named adapters wrap PyPI
judges."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any


Judge = Callable[..., float]


class VaderJudge:
    """VADER's compound sentiment score in [-1, 1] (the `vaderSentiment` package, rule-based, no model download):
    the judge of the demo's "warm and positive" goal."""

    name = "vader"

    def __init__(self):
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as error:
            raise ImportError("The VADER judge needs `pip install vaderSentiment`.") from error
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(self, text: str) -> float:
        return float(self._analyzer.polarity_scores(text)["compound"])


BUILTIN_JUDGES: dict[str, Callable[[], Judge]] = {"vader": VaderJudge}


def get_judge(judge: str | Judge) -> Judge:
    """A judge from a built-in name (`"vader"`) or any callable text -> score."""
    if callable(judge):
        return judge
    if judge not in BUILTIN_JUDGES:
        raise ValueError(f"Unknown judge {judge!r}; built-in judges: {sorted(BUILTIN_JUDGES)}, or pass a callable.")
    return BUILTIN_JUDGES[judge]()


def takes_prompt(judge: Judge) -> bool:
    """Whether `judge` scores a text against its prompt: it has a `prompt` parameter."""
    try:
        return "prompt" in inspect.signature(judge).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def judge_scores(judge: Judge, texts: Sequence[str], prompts: Sequence[Any]) -> list[float]:
    """`judge`'s score of each of `texts`; `prompts[i]` is the prompt `texts[i]` answers, given to a judge that
    `takes_prompt` as `judge(text, prompt=prompts[i])`."""
    if len(texts) != len(prompts):
        raise ValueError(f"{len(texts)} texts for {len(prompts)} prompts: give the prompt each text answers.")
    if takes_prompt(judge):
        return [float(judge(text, prompt=prompt)) for text, prompt in zip(texts, prompts)]
    return [float(judge(text)) for text in texts]
