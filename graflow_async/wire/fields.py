"""Checks of the fields a decoded message holds: each raises TypeError or ValueError
naming the field, which the envelope turns into `MalformedMessage`."""

from __future__ import annotations

import math
from typing import Any


def check(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")


def whole(value: Any, name: str, minimum: int) -> int:
    check(value, int, name)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return int(value)


def names(value: Any, name: str) -> None:
    check(value, dict, name)
    if not all(isinstance(k, str) for k in value):
        raise TypeError(f"{name} names must be strings")


def number(value: Any, name: str) -> float:
    """`value` (an int or a float) as a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond a float's range
        raise ValueError(f"{name} must be finite, got an int beyond a float's range") from None
    if not math.isfinite(as_float):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return as_float


def positive(value: Any, name: str) -> float:
    found = number(value, name)
    if found <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return found


def duration(value: Any) -> float:
    seconds = number(value, "duration")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds
