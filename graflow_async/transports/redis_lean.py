"""The Redis Streams transport's hot path: XADD, XACK, XDEL, XREAD and XREADGROUP on
asyncio protocol connections that speak RESP2 through hiredis (redis-py's own C parser
and packer).

Why not redis-py here: its asyncio client spends about 125-170 µs of CPU per command on
this project's 2-core machine (pool, locks, streams, response callbacks), against
about 50 µs for the same PING through a protocol and hiredis; a chain of tasks pays
six commands per task. Everything else of the transport (groups, claims, dead
letters, stats) stays on redis-py.

`LeanRedis` keeps one shared connection for commands that answer at once: callers
pipeline onto it without a lock, since each write is whole and answers come in order.
Blocking reads (XREAD/XREADGROUP BLOCK) each borrow a connection of their own. A
connection whose caller gave up on a blocking read, or that timed out, is closed,
never reused half read. Failures are redis-py's exception types, so the transport's
retry and error handling treat both paths alike.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection, UnixDomainSocketConnection, parse_url

MAX_IDLE_BLOCKING = 8  # blocking-read connections kept for reuse


class LeanConnection(asyncio.Protocol):
    """One connection: commands written whole, answers handed to waiters in order."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(protocolError=redis_errors.InvalidResponse, replyError=redis_errors.ResponseError)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.broken = False
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # done once closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiters = self._waiters
        while True:
            try:
                answer = self._reader.gets()
            except redis_errors.InvalidResponse as exc:
                self._fail(exc)
                return
            if answer is False:
                return
            if not waiters:  # an answer nobody asked for: the stream is out of step
                self._fail(redis_errors.InvalidResponse("an unexpected answer from Redis"))
                return
            waiter = waiters.popleft()
            if not waiter.done():  # a caller that gave up leaves its place, and it is skipped
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis_errors.ConnectionError(f"Redis closed the connection: {exc or 'end of stream'}"))
        if not self.gone.done():
            self.gone.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.broken = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def send(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Write `commands` in one write; a future per answer (an error answer is a
        `ResponseError` as the future's result, not raised)."""
        if self.broken or self._transport is None or self._transport.is_closing():
            raise redis_errors.ConnectionError("the Redis connection is closed")
        data = b"".join([hiredis.pack_command(command) for command in commands])
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._waiters.extend(futures)
        self._transport.write(data)
        return futures

    def close(self) -> None:
        self._fail(redis_errors.ConnectionError("the Redis connection was closed"))


class LeanRedis:
    """Connections to the server a redis-py URL names (plain TCP or a unix socket)."""

    def __init__(self, settings: dict[str, Any], connect_timeout: float) -> None:
        self._settings = settings
        self._connect_timeout = connect_timeout
        self._shared: LeanConnection | None = None
        self._opening: asyncio.Future[LeanConnection] | None = None
        self._idle: list[LeanConnection] = []
        self._all: set[LeanConnection] = set()  # open or closing, until their socket is closed

    @classmethod
    def for_url(cls, url: str, connect_timeout: float) -> LeanRedis | None:
        """A `LeanRedis` for `url`, or None when the URL asks for what it does not do (TLS,
        RESP3, a connection class of its own): redis-py then serves the hot path too."""
        settings: dict[str, Any] = dict(parse_url(url))
        kind = settings.pop("connection_class", Connection)
        if kind not in (Connection, UnixDomainSocketConnection) or settings.get("protocol") not in (None, 2, "2"):
            return None
        known = {"host", "port", "path", "db", "username", "password"}
        if set(settings) - known:
            return None
        return cls(settings, connect_timeout)

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Answers to `commands`, pipelined on the shared connection (an error answer in its
        place). Raises redis-py's ConnectionError when the connection fails."""
        connection = self._shared
        if connection is None or connection.broken:
            connection = await self._shared_connection()
        futures = connection.send(commands)
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # answers nobody will read: skipped as they come, or failed quietly
                if not future.cancel() and not future.cancelled():
                    future.exception()
            raise

    async def blocking(self, command: tuple[Any, ...]) -> Any:
        """The answer to one blocking command, on a connection of its own; an error answer raised."""
        while self._idle and self._idle[-1].broken:  # closed by the server while idle
            self._idle.pop()
        connection = self._idle.pop() if self._idle else await self._open()
        try:
            [future] = connection.send([command])
            answer = await future
        except BaseException:
            connection.close()  # its answer may still come: never reused half read
            raise
        if len(self._idle) < MAX_IDLE_BLOCKING and not connection.broken:
            self._idle.append(connection)
        else:
            connection.close()
        if isinstance(answer, redis_errors.ResponseError):
            raise answer
        return answer

    def reset(self) -> None:
        """Close every connection (after a timeout: the server may be gone without a word,
        or on closing): their pending commands fail with ConnectionError."""
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        self._shared = None

    async def aclose(self) -> None:
        """`reset`, and wait until the sockets are closed."""
        self.reset()
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
        self._shared = connection
        return connection

    async def _open(self) -> LeanConnection:
        loop, s = asyncio.get_running_loop(), self._settings
        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in s:
                    _, connection = await loop.create_unix_connection(LeanConnection, s["path"])
                else:
                    _, connection = await loop.create_connection(
                        LeanConnection, s.get("host", "localhost"), int(s.get("port", 6379))
                    )
                self._all.add(connection)
                connection.gone.add_done_callback(lambda _: self._all.discard(connection))
                try:
                    await self._hello(connection)
                except BaseException:
                    connection.close()
                    raise
        except (OSError, TimeoutError) as exc:
            raise redis_errors.ConnectionError(f"cannot connect to Redis: {exc or type(exc).__name__}") from exc
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
        for answer in [await future for future in connection.send(commands)]:
            if isinstance(answer, redis_errors.ResponseError):
                raise redis_errors.AuthenticationError(str(answer))


def entries(answer: Any) -> list[tuple[Any, dict[bytes, Any]]]:
    """The (id, fields) entries of a raw XREAD/XREADGROUP answer."""
    if not answer:
        return []
    streams = answer.values() if isinstance(answer, dict) else (pair[1] for pair in answer)
    out = []
    for found in streams:
        for entry_id, flat in found:
            out.append((entry_id, _fields(flat)))
    return out


def _fields(flat: Any) -> dict[bytes, Any]:
    if not flat:  # an entry deleted while pending reads as its id and nothing
        return {}
    it = iter(flat)
    return dict(zip(it, it, strict=False))
