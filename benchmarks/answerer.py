"""Answers feedback requests from another process, stamping each answer with the time it
was given: ``python -m benchmarks.answerer URL NAMESPACE COUNT [IDLE]``.

`time.monotonic()` is system-wide on Linux, so the stamp compares with one taken by the
task that gets the answer, in whatever process it runs. The answerer polls; the waiter
does not (it is woken through pub/sub).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from .feedback import answer_all


async def main(url: str, namespace: str, count: int, idle: float) -> None:
    from graflow_async.feedback.redis import RedisFeedbackStore

    async with RedisFeedbackStore(url, namespace=namespace) as store:
        await answer_all(store, count, poll=0.002, idle=idle)


def start(url: str, namespace: str, count: int, idle: float = 0.0) -> subprocess.Popen[bytes]:
    """The answerer as a process of its own."""
    from . import ROOT

    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.answerer", url, namespace, str(count), str(idle)], cwd=ROOT
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0))
