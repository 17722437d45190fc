"""graflow-async benchmarks: `make bench` (python -m benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_module(module: str, *args: object) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> ARGS`` in its own process; the JSON line it
    printed last (see `report`)."""
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def report(result: dict[str, Any], table: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Print `result` as one JSON line on stdout (what `make bench` reads), and with
    `table` also as a readable table on stderr."""
    if table is not None:
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            table(result)
        finally:
            sys.stdout = stdout
    print(json.dumps(result))


def bar(unit: str, value: Any, limit: Any, met: bool) -> dict[str, Any]:
    """One of a suite's bars, as its JSON keeps it: the figure (under `unit`), the bar,
    whether it was met."""
    return {unit: value, "bar": limit, "met": met}


def print_bars(bars: dict[str, dict[str, Any]]) -> None:
    """The table's last lines: each bar met or MISSED."""
    for name, one in bars.items():
        print(f"    {name}: {'met' if one['met'] else 'MISSED'} (bar {one['bar']})")
