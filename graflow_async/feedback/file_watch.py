"""How a `FileFeedbackStore` hears of answers given by other processes: an inotify watch
on its directory (`watchfiles.awatch`), running only while someone in this process
waits, that wakes the waiters of the requests whose files changed."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from watchfiles import Change, awatch

from graflow_async.feedback.waiters import Waiters
from graflow_async.logs import LibraryLog

T = TypeVar("T")
log = LibraryLog()
_STEP_MS = 20  # how long the watcher lets a burst of file events settle
_DEBOUNCE_MS = 200
_TIMEOUT_MS = 1000  # bounds how long cancelling the watcher's thread can take


class DirectoryWatch:
    """Wakes `waiters` of the feedback ids whose record files (named by `key`) change."""

    def __init__(self, directory: Path, waiters: Waiters, key: Callable[[str], str]) -> None:
        self.directory = directory
        self._waiters = waiters
        self._key = key
        self._waiting: Counter[str] = Counter()  # feedback ids waited on in this process
        self._task: asyncio.Task[None] | None = None
        self._stop: threading.Event | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    async def waiting(self, feedback_id: str, wait: Callable[[], Awaitable[T]]) -> T:
        """`wait()`, watching the directory meanwhile (while anyone waits)."""
        self._waiting[feedback_id] += 1
        try:
            await self._start()
            return await wait()
        finally:
            self._waiting[feedback_id] -= 1
            if self._waiting[feedback_id] <= 0:
                del self._waiting[feedback_id]
            if not self._waiting:
                self.stop()

    async def _start(self) -> None:
        if self._task is None:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        if self._task is None or self._task.done():
            self._stop = threading.Event()
            self._task = asyncio.create_task(self._watch(self._stop), name="graflow-feedback-watch")
            self._task.add_done_callback(_report_failure)
        # awatch registers its inotify watch in the task's first step, before it first
        # awaits; that step is ahead of us in the loop's queue. Once we resume, every
        # change made after our caller reads the files is seen by the watcher.
        await asyncio.sleep(0)

    def stop(self) -> None:
        task, stop = self._task, self._stop
        self._task = self._stop = None
        if task is not None and stop is not None:
            stop.set()  # the watcher thread notices within one step and awatch returns
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def aclose(self) -> None:
        self.stop()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def _watch(self, stop: threading.Event) -> None:
        async for changes in awatch(
            self.directory,
            watch_filter=_is_record,
            debounce=_DEBOUNCE_MS,
            step=_STEP_MS,
            stop_event=stop,
            rust_timeout=_TIMEOUT_MS,
            recursive=False,
        ):
            changed = {Path(path).name.rsplit(".", 1)[0] for _, path in changes}
            for feedback_id in [f for f in self._waiting if self._key(f) in changed]:
                self._waiters.settle(feedback_id)


def _is_record(change: Change, path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.endswith((".json", ".settled"))


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning(
            "feedback directory watcher failed; other processes' answers are not noticed", error=repr(task.exception())
        )
