"""What importing and running graflow_async loads, seen from a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_local_run_loads_no_optional_extra() -> None:
    """redis-py, aiohttp, aiobotocore and aiodocker are loaded only when their part is used
    (a local run loading redis-py cost every process 11 MiB and 190 modules)."""
    code = (
        "import asyncio, sys\n"
        "from graflow_async import run, task, workflow\n"
        "@task\nasync def a(): return 1\n"
        "with workflow('w') as wf: wf.add(a)\n"
        "asyncio.run(run(wf))\n"
        "print(sorted(m for m in ('redis', 'aiohttp', 'aiobotocore', 'aiodocker', 'hiredis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
