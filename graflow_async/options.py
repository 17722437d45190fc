"""Checking options where they enter: NaN, infinities and out-of-range values are
refused at once with a ValueError naming the option (a NaN timeout would otherwise
compare false with everything and make a run wait forever), and so is a run id that
could not name a file or a key."""

from __future__ import annotations

import math
from typing import Any


def number(name: str, value: Any, *, minimum: float = 0.0, above: bool = False) -> float:
    """`value` as a float: finite and >= `minimum` (> `minimum` when `above`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (above and value == minimum):
        raise ValueError(f"{name} must be {'>' if above else '>='} {minimum:g}, got {value!r}")
    return float(value)


def whole(name: str, value: Any, *, minimum: int = 0) -> int:
    """`value` as an int: a whole number >= `minimum` (1.0 is accepted as 1)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def run_id(value: Any) -> str:
    """`value` as a run id, which names keys and files: 1-200 visible characters, no
    spaces, no '/', and not '.' or '..'."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 200
        or not value.isprintable()
        or any(c.isspace() for c in value)
        or "/" in value
        or value in (".", "..")
    ):
        raise ValueError(
            f"run_id must be 1-200 visible characters without spaces or '/' (not '.' or '..'), got {value!r}"
        )
    return value
