"""Validation helpers shared by `TokenRewardConfig` and `TFPOConfig`: every message names the field, the value and
what to do instead.

Standard library only, so stage 1 (`tfpo_hf.rewards.config`) can use them without importing transformers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _invalid(name: str, value: Any, requirement: str, fix: str) -> ValueError:
    return ValueError(f"`{name}` must be {requirement}, got {value!r}. {fix}")


def _check_finite(name: str, value: Any, fix: str) -> None:
    if not _is_real(value) or not math.isfinite(value):
        raise _invalid(name, value, "a finite number", fix)


def _check_positive(name: str, value: Any, fix: str) -> None:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise _invalid(name, value, "a finite number > 0", fix)


def _check_int_at_least(name: str, value: Any, minimum: int, fix: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        raise _invalid(name, value, f"{'None or ' if optional else ''}an integer >= {minimum}", fix)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _invalid(name, value, f"one of {choices}", f"Set `{name}` to one of {', '.join(map(repr, choices))}.")
