"""Connections of the lean path: hiredis on asyncio protocols, for a plain TCP or unix
socket URL (what redis-py's asyncio client costs per command is about three times as
much CPU on this project's machines: pool, locks, streams, response callbacks).

One shared connection carries every command that answers at once: callers pipeline onto
it without a lock, since each write is whole and answers come in order. Blocking reads
(XREAD/XREADGROUP BLOCK) each hold a connection of their own, at most `max_blocking` at
a time (more callers wait their turn), kept for reuse. A connection whose caller gave up,
or that failed in any way, is closed, never reused half read. `aclose` leaves no socket
behind, a connection still opening included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import Connection, UnixDomainSocketConnection, parse_url

from graflow_async.exceptions import TransportError
from graflow_async.transports.redis.errors import ReplyError, Unavailable, is_retryable, refusal
from graflow_async.transports.redis.protocol import LeanConnection

MAX_IDLE_BLOCKING = 4  # blocking-read connections kept open for reuse


class Interrupt:
    """Lets another task cut a blocking read short: the read then answers None, as a
    read that timed out would (the connection it was on is closed)."""

    __slots__ = ("_connection", "interrupted")

    def __init__(self) -> None:
        self._connection: LeanConnection | None = None
        self.interrupted = False

    def interrupt(self) -> None:
        connection = self._connection
        if connection is not None:
            self.interrupted = True
            connection.close()


class LeanRedis:
    """Connections to the server a URL names (plain TCP or a unix socket)."""

    def __init__(
        self,
        settings: dict[str, Any],
        connect_timeout: float,
        *,
        max_blocking: int = 8,
        max_reply_bytes: int | None = None,
        url: str = "redis",
        op_timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self.op_timeout = op_timeout  # seconds an answer may take (a blocking read: its block, and this)
        self._url = url  # for messages
        self._connect_timeout = connect_timeout
        self._max_reply_bytes = max_reply_bytes
        self._shared: LeanConnection | None = None
        self._opening: asyncio.Future[LeanConnection] | None = None
        self._idle: list[LeanConnection] = []
        self._blocking_slots = asyncio.Semaphore(max_blocking)
        self._all: set[LeanConnection] = set()  # open or closing, until their socket is closed
        self._closed = False

    @staticmethod
    def settings_for(url: str) -> dict[str, Any] | None:
        """What the lean path needs of `url`, or None when the URL asks for what it does
        not do (TLS, RESP3, options of redis-py's own): redis-py then serves it."""
        settings: dict[str, Any] = dict(parse_url(url))
        kind = settings.pop("connection_class", Connection)
        if kind not in (Connection, UnixDomainSocketConnection) or settings.get("protocol") not in (None, 2, "2"):
            return None
        if set(settings) - {"host", "port", "path", "db", "username", "password"}:
            return None
        return settings

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Answers to `commands`, pipelined on the shared connection (an error answer is a
        `ReplyError` in its place). Raises `Unavailable` or `MalformedReply` when the
        connection fails."""
        connection = self._shared
        if connection is None or connection.broken:
            connection = await self._shared_connection()
        futures = connection.send(commands, self.op_timeout)
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # answers nobody will read: skipped as they come, or failed quietly
                if not future.cancel() and not future.cancelled():
                    future.exception()
            raise

    async def blocking(self, command: tuple[Any, ...], interrupt: Interrupt | None = None, block: float = 0.0) -> Any:
        """The answer to one blocking command that blocks for `block` seconds at most, on a
        connection of its own (an error answer in its place); None when `interrupt` cut it short."""
        async with self._blocking_slots:
            while self._idle and self._idle[-1].broken:  # closed by the server while idle
                self._idle.pop()
            connection = self._idle.pop() if self._idle else await self._open()
            if interrupt is not None:
                interrupt.interrupted = False
                interrupt._connection = connection
            try:
                [future] = connection.send([command], block + self.op_timeout)
                answer = await future
            except Unavailable:
                if interrupt is not None and interrupt.interrupted:
                    return None
                raise
            except BaseException:
                connection.close()  # its answer may still come: never reused half read
                raise
            finally:
                if interrupt is not None:
                    interrupt._connection = None
            if len(self._idle) < MAX_IDLE_BLOCKING and not connection.broken and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    def reset(self) -> None:
        """Close every connection (after a timeout: the server may be gone without a word):
        their pending commands fail with `Unavailable`."""
        for connection in list(self._all):
            connection.abort()
        self._idle.clear()
        self._shared = None

    async def aclose(self) -> None:
        """`reset` for good, and wait until the sockets are closed."""
        self._closed = True
        self.reset()
        if self._opening is not None:
            self._opening.cancel()
        if self._all:
            await asyncio.wait([c.gone for c in self._all], timeout=1.0)

    async def _shared_connection(self) -> LeanConnection:
        if self._opening is None:  # one opening at a time; concurrent callers share it
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            connection = await asyncio.shield(opening)
        finally:
            if opening.done():
                self._opening = None
                if not opening.cancelled():
                    opening.exception()  # retrieved: every caller sees it through the shield
        self._shared = connection
        return connection

    async def _open(self) -> LeanConnection:
        if self._closed:
            raise TransportError("the Redis transport is closed")
        loop, s = asyncio.get_running_loop(), self._settings
        limit = self._max_reply_bytes

        def protocol() -> LeanConnection:
            return LeanConnection() if limit is None else LeanConnection(limit)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in s:
                    _, connection = await loop.create_unix_connection(protocol, s["path"])
                else:
                    _, connection = await loop.create_connection(
                        protocol, s.get("host", "localhost"), int(s.get("port", 6379))
                    )
                self._all.add(connection)
                connection.gone.add_done_callback(lambda _: self._all.discard(connection))
                if self._closed:  # closed while this one was opening: it must not outlive the pool
                    connection.abort()
                    raise TransportError("the Redis transport is closed")
                try:
                    await self._hello(connection)
                except BaseException:
                    connection.abort()
                    raise
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot connect to Redis: {exc or type(exc).__name__}") from exc
        return connection

    async def _hello(self, connection: LeanConnection) -> None:
        s, commands = self._settings, []
        if s.get("password"):
            user = s.get("username")
            commands.append(("AUTH", user, s["password"]) if user else ("AUTH", s["password"]))
        if int(s.get("db") or 0):
            commands.append(("SELECT", int(s["db"])))
        if not commands:
            return
        answers = [await future for future in connection.send(commands, self._connect_timeout)]
        for command, answer in zip(commands, answers, strict=True):
            if isinstance(answer, ReplyError):
                if is_retryable(str(answer)):
                    raise Unavailable(str(answer))
                raise refusal(str(answer), str(command[0]), self._url)
