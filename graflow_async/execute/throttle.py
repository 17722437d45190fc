"""An executor's attempts under limits (SPEC 11): each waits for its limits
(`transports.limits.Limits.acquire`) before it starts, holding no worker slot meanwhile,
and gives its slots back once its reply is written.

An attempt that has to wait tells its run (a `task_throttled` event: the task shows as
throttled), and again when it starts (`task_admitted`). On a worker, an attempt waiting
for its limits is given up, and its delivery settled without running, once its run has
ended (a run cancelled while its task was throttled); in-process the run cancels it.
A slot is held under the attempt's identity (run, node, cycle, attempt), so an attempt
delivered again after its worker died takes its own slot back rather than another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from graflow_async.define.limits import Want, wants
from graflow_async.define.tasks import Task
from graflow_async.execute.context_port import ContextPort
from graflow_async.logs import LibraryLog
from graflow_async.transports.limits import Limits
from graflow_async.wire.messages import TaskMessage

log = LibraryLog()
CHECK_EVERY = 1.0  # seconds between looks at whether a waiting attempt's run has ended (workers)


def holder_of(msg: TaskMessage) -> str:
    """The identity an attempt holds its slots under."""
    return f"{msg.run_id}:{msg.node}:{msg.cycle}:{msg.attempt}"


class Throttle:
    """The limits of one executor's attempts. `spawn` runs a notice to a run in the
    background; `ended` (workers) says whether a message's run has ended."""

    def __init__(
        self,
        limits: Limits,
        port: ContextPort,
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
        ended: Callable[[TaskMessage], Awaitable[bool]] | None = None,
    ) -> None:
        self.limits = limits
        self.port = port
        self._spawn = spawn
        self._ended = ended
        self.held: dict[str, tuple[tuple[Want, ...], float]] = {}  # holder -> (wants, lease)
        self.waiting = 0  # attempts waiting for their limits now

    async def admit(self, msg: TaskMessage, task: Task, lease: float) -> bool:
        """Wait until the attempt of `msg` holds its limits: True; False when its run ended
        meanwhile (nothing is held then). `LimitKeyError` when a key cannot be formatted."""
        asked = task.fixed_wants or wants(task.id, task.limits, msg.kwargs)
        holder, since, waited = holder_of(msg), time.monotonic(), False
        if await self.limits.take_first(holder, asked, priority=msg.priority, lease=lease):  # most attempts
            self.held[holder] = (asked, lease)
            return True

        def on_wait() -> None:
            nonlocal waited
            waited = True
            names = list(dict.fromkeys(w.name for w in asked))
            self._spawn(self.port.notify(msg, "throttled", {"limits": names}))

        self.waiting += 1
        try:
            acquiring = self.limits.acquire(holder, asked, priority=msg.priority, lease=lease, on_wait=on_wait)
            if self._ended is None:
                await acquiring
            elif not await self._unless_ended(msg, asyncio.ensure_future(acquiring), holder, asked):
                return False
        finally:
            self.waiting -= 1
        self.held[holder] = (asked, lease)
        if waited:
            self._spawn(self.port.notify(msg, "admitted", {"waited": time.monotonic() - since}))
        return True

    async def _unless_ended(
        self, msg: TaskMessage, acquiring: asyncio.Future[None], holder: str, asked: tuple[Want, ...]
    ) -> bool:
        """Whether `acquiring` got in before the run of `msg` ended (then it is given up)."""
        assert self._ended is not None
        try:
            while True:
                done, _ = await asyncio.wait({acquiring}, timeout=CHECK_EVERY)
                if done:
                    acquiring.result()
                    return True
                if await self._ended(msg):
                    break
        except BaseException:
            acquiring.cancel()
            raise
        acquiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquiring
            await self.limits.release(holder, asked)  # got in as it was given up
        return False

    async def release(self, msg: TaskMessage) -> None:
        """The attempt of `msg` is done: its slots go back (a failure to say so is only
        logged: on Redis its slots then lapse with its lease)."""
        holder = holder_of(msg)
        held = self.held.pop(holder, None)
        if held is None:
            return
        try:
            await self.limits.release(holder, held[0])
        except Exception as exc:
            log.warning("could not give a task's limit slots back", task_id=msg.task_id, error=str(exc))

    async def renew(self) -> None:
        """The attempts running here keep their slots (a worker's heartbeat)."""
        by_lease: dict[float, list[tuple[str, tuple[Want, ...]]]] = {}
        for holder, (asked, lease) in self.held.items():
            by_lease.setdefault(lease, []).append((holder, asked))
        for lease, held in by_lease.items():
            await self.limits.renew(held, lease)
