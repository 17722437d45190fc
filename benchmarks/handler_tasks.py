"""The task the handler benchmark runs in containers and child processes (module-level, so
that they import it by path)."""

from __future__ import annotations


def noop(i: int) -> int:
    return i
