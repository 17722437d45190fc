"""Workflows that schedules start in the tests (SPEC 11). Worker and serve processes import
this module by name (``--schedule 'beat=every:0.3=schedule_flows:beat'``).

`beat`'s task appends a line ``<run_id> <pid>`` to the file named by the environment's
``GRAFLOW_TEST_TICKS`` each time it runs, so a test counts how many times each tick's run
was executed, and where.
"""

from __future__ import annotations

import os
from typing import Any

from graflow_async import task, workflow


@task(inject_context=True)
async def beat_once(context: Any, scheduled_at: str) -> str:
    path = os.environ.get("GRAFLOW_TEST_TICKS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{context.run_id} {os.getpid()}\n".encode())  # one small append: whole lines
        finally:
            os.close(fd)
    return scheduled_at


with workflow("beat") as beat:
    beat.add(beat_once)


@task
async def greet(scheduled_at: str, who: str = "world") -> str:
    return f"hello {who} at {scheduled_at}"


with workflow("hello") as hello:
    hello.add(greet)


@task
async def explode() -> None:
    raise RuntimeError("scheduled failure")


with workflow("boom") as boom:
    boom.add(explode)
