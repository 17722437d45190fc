"""A fault-injecting RESP2 proxy in front of a real redis-server, for tests.

`FaultProxy(host, port)` listens on a free port of 127.0.0.1 and gives each client
connection an upstream connection of its own, so pipelines and blocking commands keep
their order. Client commands and upstream replies are parsed with `hiredis.Reader` and
each reply is written back re-encoded as RESP2, strictly in the order of the commands.
`proxy.inject(command, fault, ...)` makes matching commands misbehave: `ErrorReply`,
`Malformed`, `HugeLength`, `Drip`, `Cut`, `Stall`, `Vanish`.

The proxy speaks RESP2 only: ``HELLO 3`` is refused with ``-NOPROTO`` (redis-py then falls
back to RESP2 on its own); pub/sub and MONITOR are not supported (their pushes have no
command to answer and drop the connection). Everything is bounded: one command or one
reply of at most ``max_command_bytes`` / ``max_reply_bytes``, at most ``max_pending``
commands waiting for their replies per connection; a client sending bytes that are not
RESP is disconnected.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import hiredis
import pytest

logger = logging.getLogger(__name__)

_READ_SIZE = 65536
_CLOSE_TIMEOUT = 1.0
_THREAD_TIMEOUT = 10.0  # seconds `ProxyThread` waits for its loop to start, stop or run a call
_NOT_EXECUTED: Any = object()  # the reply of a command the proxy did not send upstream
_LOST: Any = object()  # the reply of a command whose upstream connection closed first


class ReplyError(Exception):
    """An error reply (``-TEXT``) as parsed from upstream; ``str()`` is its text."""


class _Drop(Exception):
    """This connection must be closed (garbage, oversized, unexpected reply, EOF)."""


def encode_reply(value: Any) -> bytes:
    """`value` (as `hiredis.Reader(replyError=ReplyError)` returns it) as RESP2 bytes."""
    out: list[bytes] = []
    _encode_into(value, out)
    return b"".join(out)


def _encode_into(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bytes):
        out += [b"$%d\r\n" % len(value), value, b"\r\n"]
    elif isinstance(value, bool | int):
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"$-1\r\n")
    elif isinstance(value, list):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, out)
    elif isinstance(value, ReplyError):
        out.append(b"-" + str(value).encode("utf-8", "replace") + b"\r\n")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP2")


def encode_command(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Fault:
    """What happens to a command a rule picked. `execute`: whether it is sent upstream."""

    execute: bool = True

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        """Answer the client (`reply` is upstream's, or `_NOT_EXECUTED`); False closes."""
        raise NotImplementedError


@dataclass(frozen=True)
class ErrorReply(Fault):
    """Answer ``-<text>``; the command is executed (its reply replaced) only if `execute`."""

    text: str
    execute: bool = False

    def __post_init__(self) -> None:
        if not self.text or "\r" in self.text or "\n" in self.text:
            raise ValueError(f"an error reply is one non-empty line: {self.text!r}")

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        await conn.send(b"-" + self.text.encode() + b"\r\n")
        return True


@dataclass(frozen=True)
class Malformed(Fault):
    """Execute, then send `data` (not RESP2) instead of the reply; the connection stays open."""

    data: bytes = b"!garbage\r\n"

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        await conn.send(self.data)
        return True


@dataclass(frozen=True)
class HugeLength(Fault):
    """Execute, then announce a bulk string of `length` bytes and trickle `chunk` every
    `interval` seconds for as long as the client stays connected."""

    length: int = 99_999_999_999
    chunk: bytes = b"xxxx"
    interval: float = 0.05

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        await conn.send(b"$%d\r\n" % self.length)
        while not conn.upstream_lost.is_set():
            await asyncio.sleep(self.interval)
            await conn.send(self.chunk)
        return False


@dataclass(frozen=True)
class Drip(Fault):
    """Execute, then send the real reply one byte every `delay` seconds."""

    delay: float = 0.05

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        data = encode_reply(reply)
        for i in range(len(data)):
            if i:
                await asyncio.sleep(self.delay)
            await conn.send(data[i : i + 1])
        return True


@dataclass(frozen=True)
class Cut(Fault):
    """Execute, send the first half of the real reply's bytes, then close the connection."""

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        data = encode_reply(reply)
        await conn.send(data[: len(data) // 2])
        return False


@dataclass(frozen=True)
class Stall(Fault):
    """Never answer (executed upstream if `execute`); later replies wait behind it, until
    the client or the server leaves."""

    execute: bool = True

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        await conn.upstream_lost.wait()
        return False


@dataclass(frozen=True)
class Vanish(Fault):
    """XADD only: answer a fresh stream id (now + 1 hour, "-0", increasing) without
    executing, as a failover to a replica that missed the write would."""

    execute: bool = False

    async def answer(self, conn: _Connection, reply: Any) -> bool:
        await conn.send(encode_reply(conn.proxy.next_vanished_id()))
        return True


@dataclass(eq=False)
class Rule:
    """One `inject()`: `applied` counts the commands it changed."""

    command: str
    fault: Fault
    times: int | None = 1
    skip: int = 0
    match: Callable[[list[bytes]], bool] | None = None
    applied: int = 0
    seen: int = 0  # matching commands offered to it while not exhausted (skipped ones too)
    error: BaseException | None = None  # the last exception `match` raised (it then does not match)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def takes(self, name: str, args: list[bytes]) -> bool:
        if name != self.command or self.exhausted or not self._matches(args):
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        self.applied += 1
        return True

    def _matches(self, args: list[bytes]) -> bool:
        if self.match is None:
            return True
        try:
            return bool(self.match(args))
        except Exception as exc:
            self.error = exc
            logger.debug("match of %r raised", self, exc_info=True)
            return False


_NOPROTO = ErrorReply("NOPROTO this proxy speaks RESP2 only")


def _refuses_hello(args: list[bytes]) -> bool:
    return len(args) > 1 and args[0].upper() == b"HELLO" and args[1] != b"2"


@dataclass(eq=False)
class _Slot:
    fault: Fault | None
    reply: asyncio.Future[Any] | None  # None: not sent upstream


@dataclass(eq=False)
class _Connection:
    """One client connection and its upstream connection: three tasks (client reader,
    upstream reader, client writer); the first to end ends them all."""

    proxy: FaultProxy
    client_r: asyncio.StreamReader
    client_w: asyncio.StreamWriter
    upstream_w: asyncio.StreamWriter | None = None
    pending: collections.deque[asyncio.Future[Any]] = field(default_factory=collections.deque)
    slots: asyncio.Queue[_Slot] = field(init=False)
    upstream_lost: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.slots = asyncio.Queue(self.proxy.max_pending)

    def _lost(self) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(_LOST)
        return future

    async def send(self, data: bytes) -> None:
        self.client_w.write(data)
        await self.client_w.drain()

    async def run(self) -> None:
        try:
            upstream_r, self.upstream_w = await asyncio.open_connection(
                self.proxy.upstream_host, self.proxy.upstream_port
            )
            await self._serve(upstream_r)
        except (OSError, _Drop, hiredis.ProtocolError) as exc:
            logger.debug("connection closed: %r", exc)
        except Exception as exc:
            self.proxy.errors.append(exc)
            logger.debug("proxy connection failed", exc_info=True)
        finally:
            await self._shut()

    async def _serve(self, upstream_r: asyncio.StreamReader) -> None:
        tasks = [
            asyncio.ensure_future(self._read_client()),
            asyncio.ensure_future(self._read_upstream(upstream_r)),
            asyncio.ensure_future(self._write_client()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def abort(self) -> None:
        for writer in (self.client_w, self.upstream_w):
            if writer is not None:
                writer.transport.abort()

    async def _shut(self) -> None:
        """Close both sockets, letting what was written (half a `Cut` reply) go out first."""
        writers = [w for w in (self.client_w, self.upstream_w) if w is not None]
        for writer in writers:
            writer.close()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        except TimeoutError:
            pass
        finally:
            self.abort()

    async def _read_client(self) -> None:
        parser = hiredis.Reader()
        while data := await self.client_r.read(_READ_SIZE):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                if not (isinstance(command, list) and command and all(isinstance(a, bytes) for a in command)):
                    raise _Drop(f"not a command: {command!r}")
                await self._dispatch(command)
            if parser.len() > self.proxy.max_command_bytes:
                raise _Drop("command too long")
            await self._drain_upstream()

    async def _drain_upstream(self) -> None:
        assert self.upstream_w is not None  # connected before any command is read
        if not self.upstream_lost.is_set():
            try:
                await self.upstream_w.drain()
            except ConnectionError:
                await self.upstream_lost.wait()  # once its reader has passed on what came first

    async def _dispatch(self, command: list[bytes]) -> None:
        fault = self.proxy.fault_for(command)
        slot = _Slot(fault, None)
        if (fault is None or fault.execute) and self.upstream_lost.is_set():
            slot.reply = self._lost()
        elif fault is None or fault.execute:
            assert self.upstream_w is not None
            slot.reply = asyncio.get_running_loop().create_future()
            self.pending.append(slot.reply)
            self.upstream_w.write(encode_command(command))
        await self.slots.put(slot)

    async def _read_upstream(self, upstream_r: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=ReplyError)
        while data := await upstream_r.read(_READ_SIZE):
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if not self.pending:
                    raise _Drop(f"a reply to no command: {reply!r}")
                self.pending.popleft().set_result(reply)
            if parser.len() > self.proxy.max_reply_bytes:
                raise _Drop("reply too long")
        # The server closed: the replies it sent still go out, in order, then the client's
        # connection closes (at the first reply lost, or here).
        self.upstream_lost.set()
        while self.pending:
            self.pending.popleft().set_result(_LOST)
        await self.slots.put(_Slot(None, self._lost()))
        await asyncio.get_running_loop().create_future()

    async def _write_client(self) -> None:
        while True:
            slot = await self.slots.get()
            reply = _NOT_EXECUTED if slot.reply is None else await slot.reply
            if reply is _LOST:
                raise _Drop("upstream closed")
            if slot.fault is None:
                await self.send(encode_reply(reply))
            elif not await slot.fault.answer(self, reply):
                return


class FaultProxy:
    """A RESP2 proxy to ``upstream_host:upstream_port`` that injects faults; see the module."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        max_command_bytes: int = 16 << 20,
        max_reply_bytes: int = 256 << 20,
        max_pending: int = 1024,
        max_commands_kept: int = 100_000,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.max_command_bytes = max_command_bytes
        self.max_reply_bytes = max_reply_bytes
        self.max_pending = max_pending
        self.max_commands_kept = max_commands_kept
        self.commands: list[str] = []  # the names seen, upper-case; the oldest go past 2 * max_commands_kept
        self.connections = 0  # client connections accepted so far
        self.errors: list[BaseException] = []  # the proxy's own failures (bugs), never expected
        self.rules: list[Rule] = []
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._open: dict[_Connection, asyncio.Task[None]] = {}
        self._last_vanished_ms = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> int:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self._port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def aclose(self) -> None:
        """Stop listening, close every client and upstream socket, end every task."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn, task in list(self._open.items()):
            conn.abort()
            task.cancel()
        await asyncio.gather(*self._open.values(), return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def inject(
        self,
        command: str,
        fault: Fault,
        *,
        times: int | None = 1,
        skip: int = 0,
        match: Callable[[list[bytes]], bool] | None = None,
    ) -> Rule:
        """Apply `fault` to commands named `command` (after `skip` of them, `times` of them or
        every one for None) whose arguments (without the name) satisfy `match`. The first
        rule, in the order injected, that takes a command applies to it."""
        name = command.upper()
        if not isinstance(fault, Fault):
            raise TypeError(f"not a fault: {fault!r}")
        if isinstance(fault, Vanish) and name != "XADD":
            raise ValueError("Vanish applies to XADD only")
        if skip < 0 or (times is not None and times < 0):
            raise ValueError("skip and times are counts")
        rule = Rule(name, fault, times=times, skip=skip, match=match)
        self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        self.rules.remove(rule)

    def clear(self) -> None:
        self.rules.clear()

    def fault_for(self, command: list[bytes]) -> Fault | None:
        """Record `command` and pick its fault, if any."""
        name = command[0].decode("latin-1").upper()
        self.commands.append(name)
        if len(self.commands) > 2 * self.max_commands_kept:
            del self.commands[: -self.max_commands_kept]
        for rule in self.rules:
            if rule.takes(name, command[1:]):
                return rule.fault
        return _NOPROTO if _refuses_hello(command) else None

    def next_vanished_id(self) -> bytes:
        """A stream id past any real one of now: unix ms + 1 hour, increasing, ``-0``."""
        self._last_vanished_ms = max(int(time.time() * 1000) + 3_600_000, self._last_vanished_ms + 1)
        return b"%d-0" % self._last_vanished_ms

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # closing
            writer.transport.abort()
            return
        self.connections += 1
        conn = _Connection(self, reader, writer)
        task = asyncio.ensure_future(conn.run())
        self._open[conn] = task
        task.add_done_callback(lambda _: self._open.pop(conn, None))


class ProxyThread:
    """A `FaultProxy` served by an event loop of its own on a thread, so that it can
    outlive the event loop of a test: a module-scoped fixture puts worker processes behind
    it once, and each test injects and clears its own rules through `call`.

    `start()` (or ``with``) starts it and returns the proxy; `close()` closes it again."""

    def __init__(self, upstream_host: str, upstream_port: int, **options: Any) -> None:
        self.proxy = FaultProxy(upstream_host, upstream_port, **options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` run on the proxy's loop (between two of its steps); its result."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def step() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(step)
        return done.result(_THREAD_TIMEOUT)

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(_THREAD_TIMEOUT)
        return self.proxy

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            if self._thread.is_alive():
                asyncio.run_coroutine_threadsafe(self.proxy.aclose(), self.loop).result(_THREAD_TIMEOUT)
        finally:
            if self._thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(_THREAD_TIMEOUT)
            self.loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
async def fault_proxy(redis_server: Any) -> AsyncIterator[FaultProxy]:
    """A started `FaultProxy` in front of the session's `redis_server`; at the end of the
    test it is closed and must not have failed itself (`errors`)."""
    async with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        yield proxy
    assert proxy.errors == [], proxy.errors
