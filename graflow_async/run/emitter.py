"""How a run reports its events: logged through structlog at once, and handed to its
``on_event`` callback in order (`Emitter`)."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from graflow_async.events import _METHODS, LEVELS, Event, EventKind


class Emitter:
    """Sends a run's events to its logger at once and to its `on_event` callback in order.

    `record` is synchronous so the run actor can note events while it decides;
    `flush` delivers the noted events to the callback (awaiting it if it is async).
    """

    __slots__ = ("_pending", "callback", "log", "run_id", "wants_steps")

    def __init__(self, run_id: str, callback: Callable[[Event], Any] | None, log: Any) -> None:
        self.run_id = run_id
        self.callback = callback
        self.log = log
        self._pending: list[Event] = []
        #: whether anyone hears per-task events (a callback, or a logger at DEBUG);
        #: the run actor skips recording them otherwise, on the hot path
        self.wants_steps = callback is not None or _enabled(log, logging.DEBUG)

    def record(self, kind: EventKind, task_id: str | None = None, **data: Any) -> None:
        getattr(self.log, _METHODS[LEVELS[kind]])(kind, task_id=task_id, **data)
        if self.callback is not None:
            self._pending.append(Event(kind, self.run_id, task_id, time.time(), data))

    async def flush(self) -> None:
        callback = self.callback
        if callback is None or not self._pending:
            return
        events, self._pending = self._pending, []
        for event in events:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # a broken listener must not break the run
                self.log.error("on_event callback failed", event_kind=event.kind, error=repr(exc))

    async def emit(self, kind: EventKind, task_id: str | None = None, **data: Any) -> None:
        self.record(kind, task_id, **data)
        await self.flush()


def _enabled(log: Any, level: int) -> bool:
    check = getattr(log, "is_enabled_for", None) or getattr(log, "isEnabledFor", None)
    if check is None:
        return True  # cannot tell: assume it listens
    try:
        return bool(check(level))
    except Exception:
        return True
