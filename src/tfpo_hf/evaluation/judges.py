"""Judges: callables from text to a score. Any `Callable[[str], float]` works; named adapters wrap PyPI judges."""

from __future__ import annotations

from collections.abc import Callable


Judge = Callable[[str], float]


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
