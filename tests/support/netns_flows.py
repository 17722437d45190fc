"""Tasks and the workflow of the hosts-apart test (tests/e2e/test_hosts_apart.py).

Workers in their own network namespaces import this module (``--import netns_flows``
with ``tests/support/`` on PYTHONPATH). The tasks talk to the test through files in a
`markers` directory (the namespaces share the file system): each delivery of `held`
writes ``started-<pid>`` with its pid and start time, and the first delivery waits
for the file ``release`` before it returns; `gate` waits for the file ``open``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from graflow_async import Workflow, task, workflow

WAIT_LIMIT = 30.0  # a task waiting for a file the test never writes gives up after this


async def _until_exists(path: Path) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _first(path: Path) -> bool:
    """Create `path`; True only for the first caller of all processes."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@task
async def held(markers: str) -> dict[str, Any]:
    """Says who runs it and when; the first delivery then holds on until ``release``."""
    directory, pid = Path(markers), os.getpid()
    started = time.time()
    first = _first(directory / "first-delivery")
    (directory / f"started-{pid}").write_text(json.dumps({"pid": pid, "time": started, "first": first}))
    if first:
        await _until_exists(directory / "release")
    return {"pid": pid, "first_delivery": first}


@task
async def gate(held: dict[str, Any], markers: str) -> dict[str, Any]:
    """Runs after `held` (its result as argument), leaves one file per run, waits for ``open``."""
    directory = Path(markers)
    (directory / f"gate-{os.getpid()}-{uuid.uuid4().hex[:8]}").write_text("")
    await _until_exists(directory / "open")
    return {"pid": os.getpid(), "held_by": held["pid"]}


def hosts_apart(markers: str) -> Workflow:
    """held >> gate."""
    with workflow("hosts-apart") as wf:
        held(task_id="held", markers=markers) >> gate(task_id="gate", markers=markers)
    return wf
