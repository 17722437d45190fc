"""How a `RedisFeedbackStore` hears of answers given by other processes: a subscription
to the namespace's settled channel (redis-py's pub/sub, on the connection layer's
client), started by the first wait and kept until the store closes. A lost connection
is subscribed again after a `Backoff` wait; since answers published meanwhile were
missed, every waiter then looks again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from graflow_async.clock import Backoff
from graflow_async.exceptions import TransportError
from graflow_async.feedback.waiters import Waiters
from graflow_async.logs import LibraryLog, as_text
from graflow_async.transports.redis.connection import RedisConnection

log = LibraryLog()
CONFIRM_TIMEOUT = 5.0  # seconds Redis has to confirm the subscription


class SettledListener:
    """Wakes `waiters` of the ids published on `channel`; `waiting()` names the ids
    waited on in this process (woken after a reconnection)."""

    def __init__(
        self, conn: RedisConnection, channel: str, waiters: Waiters, waiting: Callable[[], Collection[str]]
    ) -> None:
        self.conn = conn
        self.channel = channel
        self._waiters = waiters
        self._waiting = waiting
        self._lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (and wait for Redis to confirm) before the caller looks at the
        request, so that no answer published in between goes unnoticed; `TransportError`
        when Redis cannot be reached or does not confirm."""
        async with self._lock:
            if self._task is not None and not self._task.done():
                return
            await self.conn.connect()  # the first contact fails fast, naming the server
            pubsub = self._pubsub = self._pubsub or self.conn.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async with asyncio.timeout(CONFIRM_TIMEOUT):
                    while (message := await pubsub.get_message(timeout=CONFIRM_TIMEOUT)) is None or (
                        message["type"] != "subscribe"
                    ):
                        pass
            except (redis_errors.RedisError, OSError, TimeoutError) as exc:
                raise TransportError(
                    f"cannot subscribe to {self.channel!r} on Redis at {self.conn.url}: {type(exc).__name__}: {exc}"
                ) from exc
            self._task = asyncio.create_task(self._listen(pubsub), name="graflow-feedback-listener")
            self._task.add_done_callback(self._report_failure)

    async def aclose(self) -> None:
        async with self._lock:
            task, pubsub = self._task, self._pubsub
            self._task = self._pubsub = None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if pubsub is not None:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await pubsub.aclose()

    def _report_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "feedback pub/sub listener failed; waiters rely on their timeouts",
                url=self.conn.url,
                error=repr(task.exception()),
            )

    async def _listen(self, pubsub: PubSub) -> None:
        backoff = Backoff(0.05, 2.0)
        lost = False
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except redis_errors.TimeoutError:
                continue  # a socket timeout set on the caller's client: keep listening
            except (redis_errors.ConnectionError, OSError) as exc:
                if not lost:
                    log.warning("feedback pub/sub connection lost; reconnecting", url=self.conn.url, error=str(exc))
                lost = True
                await backoff.sleep()
                with contextlib.suppress(redis_errors.ConnectionError, OSError):
                    await pubsub.subscribe(self.channel)
                continue
            if message is None:
                continue
            backoff.reset()
            if lost:
                log.warning("feedback pub/sub connection is back", url=self.conn.url)
                lost = False
            if message["type"] == "message" and isinstance(message["data"], bytes | str):
                self._waiters.settle(as_text(message["data"]))
            elif message["type"] == "subscribe":
                # Subscribed again after a reconnection: answers published meanwhile
                # were missed, so every waiter looks again.
                for feedback_id in list(self._waiting()):
                    self._waiters.settle(feedback_id)
