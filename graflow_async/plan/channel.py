"""The run's channel: a key-value map the run owns and its tasks reach by messages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_MISSING: Any = object()


class ChannelData:
    """Channel values by key. Every operation is synchronous: the run actor applies
    them one message at a time, which is what makes `append` and `incr` atomic across
    every task of the run, local or remote."""

    __slots__ = ("data",)

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        """`initial` values are taken as they are: the run checked they can travel."""
        self.data: dict[str, Any] = {}
        for key, value in (initial or {}).items():
            check_key(key)
            self.data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        check_key(key)
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self) -> list[str]:
        return list(self.data)

    def append(self, key: str, value: Any) -> int:
        check_key(key)
        current = self.data.get(key, _MISSING)
        if current is _MISSING:
            self.data[key] = current = []
        elif not isinstance(current, list):
            raise TypeError(f"channel key {key!r} holds a {type(current).__name__}, not a list: cannot append")
        current.append(value)
        return len(current)

    def incr(self, key: str, amount: int | float = 1) -> int | float:
        check_key(key)
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
            raise TypeError(f"channel incr amount must be a finite number, got {amount!r}")
        current = self.data.get(key, 0)
        if isinstance(current, bool) or not isinstance(current, int | float):
            raise TypeError(f"channel key {key!r} holds a {type(current).__name__}, not a number: cannot incr")
        value = self.data[key] = current + amount
        return value

    def snapshot(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.data.items()}


def check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"channel keys are strings, got {key!r}")
