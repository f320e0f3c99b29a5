"""Validation helpers shared by `TokenRewardConfig` and `TFPOConfig`: every message names the field, the value and
what to do instead.

Standard library only, so stage 1 (`tfpo_hf.rewards.config`) can use them without importing transformers.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_number(value: Any) -> Any:
    """The Python number a 0-d array holds (a numpy scalar, a 0-d numpy array or torch tensor); anything else as is.

    Duck-typed (`ndim == 0` and `.item()`), so this module imports neither numpy nor torch.
    """
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def _numbers_from_scalars(config: Any) -> None:
    """Replace, in place, every field of the dataclass `config` that holds a numpy scalar or a 0-d tensor (such as
    `theta=np.float32(0.5)` or `tau=torch.tensor(1.0)`) by the Python number it holds: the checks below then see a
    number, and the config stays JSON-serialisable."""
    for config_field in dataclasses.fields(config):
        value = getattr(config, config_field.name)
        number = _as_number(value)
        if number is not value:
            setattr(config, config_field.name, number)


def _given(value: Any) -> str:
    """How an error message names a value of the wrong kind: None or a string as written, anything else by type."""
    return repr(value) if value is None or isinstance(value, str) else f"a {type(value).__name__}"


def _invalid(name: str, value: Any, requirement: str, fix: str) -> ValueError:
    return ValueError(f"`{name}` must be {requirement}, got {value!r}. {fix}")


def _check_finite(name: str, value: Any, fix: str) -> None:
    if not _is_real(value) or not math.isfinite(value):
        raise _invalid(name, value, "a finite number", fix)


def _check_positive(name: str, value: Any, fix: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise _invalid(name, value, f"{'None or ' if optional else ''}a finite number > 0", fix)


def _check_int_at_least(name: str, value: Any, minimum: int, fix: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        raise _invalid(name, value, f"{'None or ' if optional else ''}an integer >= {minimum}", fix)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _invalid(name, value, f"one of {choices}", f"Set `{name}` to one of {', '.join(map(repr, choices))}.")
