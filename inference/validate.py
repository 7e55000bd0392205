"""Numbers checked where they enter the lab: one line that names the argument and its range.

>>> positive_int("epochs", 0)
Traceback (most recent call last):
...
ValueError: epochs must be a whole number ≥ 1, got 0
>>> positive_float("lr", float("nan"))
Traceback (most recent call last):
...
ValueError: lr must be a finite number > 0, got nan
"""

from __future__ import annotations

import math
import numbers


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    if not _whole(value) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    return int(value)


def non_negative_int(name: str, value) -> int:
    if not _whole(value) or value < 0:
        raise ValueError(f"{name} must be a whole number ≥ 0, got {value!r}")
    return int(value)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(
        value)


def positive_float(name: str, value) -> float:
    if not _real(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def non_negative_float(name: str, value) -> float:
    if not _real(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


def optional(check, name: str, value):
    """``check(name, value)`` unless ``value`` is None."""
    return None if value is None else check(name, value)
