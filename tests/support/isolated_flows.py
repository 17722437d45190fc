"""Tasks that the example's `SubprocessHandler` runs in child processes (module-level, so
the child imports them by path)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from examples.custom_handler import SubprocessHandler
from graflow_async import TaskContext, task

HANDLER = SubprocessHandler()


@task(handler=HANDLER)
def whoami() -> int:
    return os.getpid()


@task(handler=HANDLER, max_retries=1)
def crash() -> None:
    print("crashing on purpose", flush=True)
    os._exit(5)


@task(handler=HANDLER)
def refuse(value: int) -> None:
    raise KeyError(f"no such item {value}")


@task(handler=HANDLER)
def linger(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)


@task(handler=HANDLER, inject_context=True)
async def counting(context: TaskContext) -> int:
    await context.channel.append("pids", os.getpid())
    value: int = await context.channel.incr("count", 2)
    if context.can_iterate() and value < 6:
        context.next_iteration()
    return value
