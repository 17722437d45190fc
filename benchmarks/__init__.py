"""graflow-async benchmarks: `make bench` (python -m benchmarks)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


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
