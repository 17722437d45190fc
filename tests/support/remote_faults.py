"""Tasks for the hardening tests: what workers must survive (SPEC section 7, issue 9).

Workers import this module (``--import remote_faults``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from graflow_async import task


@task
async def unserializable() -> Any:
    """Returns something msgpack cannot carry."""
    return threading.Lock()


@task
async def pid() -> int:
    return os.getpid()


@task
async def count_and_nap(marker_dir: str, index: int, seconds: float = 0.1) -> int:
    """Leaves a file per run (so a test can count what ran), then naps."""
    Path(marker_dir, f"ran-{index}-{os.getpid()}-{time.monotonic_ns()}").write_text("")
    await asyncio.sleep(seconds)
    return index


@task
def blocking_sleep(seconds: float, marker: str) -> int:
    """A plain function that cannot be interrupted (it runs in a worker thread)."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def not_a_task(path: str) -> str:
    """A plain module-level function next to the tasks: workers must never run it."""
    Path(path).write_text("ran")
    return "ran"


@task
async def fail_fast() -> None:
    raise RuntimeError("this run fails at once")


@task(inject_context=True)
async def logged_step(context: Any, index: int, seconds: float = 0.4) -> int:
    """Appends its index to the channel's ``steps`` (a context request), then naps."""
    await context.channel.append("steps", index)
    await asyncio.sleep(seconds)
    return index


@task
def blocking_once(marker: str) -> int:
    """A plain function: on its first run writes `marker` and blocks for a minute (it cannot
    be interrupted); on a later run returns at once."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(60)
    return os.getpid()


@task
async def waiting_once(marker: str) -> int:
    """The same, async: a minute's sleep on its first run."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        await asyncio.sleep(60)
    return os.getpid()


@task
async def carry(data: bytes, index: int) -> int:
    """A task whose message is as large as `data`."""
    return index


@task
async def blob(size: int, index: int, seconds: float = 0.0) -> bytes:
    """Returns `size` bytes (a reply that large) after `seconds`."""
    await asyncio.sleep(seconds)
    return bytes([index % 256]) * size
