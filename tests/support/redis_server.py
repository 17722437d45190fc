"""A real redis-server for the tests, on a free port of 127.0.0.1, never the shared 6379.

`redis_server` (session) runs Debian's ``/usr/bin/redis-server`` in a temporary
directory; `redis_url` (per test) hands out a database of it, emptied first. A server
that cannot start fails the tests that need it: they never skip.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = "/usr/bin/redis-server"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_DATABASES = 16


class RedisServer:
    """One redis-server process on `port`; `stop()` and `start()` it again on the same
    port (with ``appendonly=True`` its data survives the restart)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        executable: str = REDIS_SERVER,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = port if port is not None else _free_port()
        if self.port == 6379:
            raise RuntimeError("refusing to run a test Redis on the shared port 6379")
        self.appendonly = appendonly
        self.executable = executable
        self.extra_args = list(extra_args or [])  # more redis-server options; relative paths are under `directory`
        self.directory = Path(tempfile.mkdtemp(prefix="graflow-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def db_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, loaded: bool = True) -> None:
        """Start the server and wait until it answers PING (`loaded`), or only until it
        answers at all (it may still be loading its data); raise if it does not."""
        if self.running:
            return
        if not Path(self.executable).exists():
            raise RuntimeError(f"{self.executable} is missing: install Debian's redis-server")
        log = self.directory / "redis.log"
        command = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(log),
            "--daemonize",
            "no",
            "--databases",
            str(_DATABASES),
            *self.extra_args,
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers_ping(self.port, loaded):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut the server down gracefully (an append-only file is flushed)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _send(port: int, command: bytes, replies: int = 1) -> bytes:
    """Send inline commands; return the raw replies (simple one-line replies only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(command)
        data = b""
        while data.count(b"\r\n") < replies:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return data


def _answers_ping(port: int, loaded: bool = True) -> bool:
    try:
        answer = _send(port, b"PING\r\n")
    except OSError:
        return False
    return answer.startswith(b"+PONG") or (not loaded and answer.startswith(b"-LOADING"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test session (fails, never skips, if it cannot start)."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_next_db = itertools.count(1)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a database of `redis_server`, emptied for this test."""
    if not redis_server.running:
        redis_server.start()  # a previous test stopped it
    db = next(_next_db) % _DATABASES
    reply = _send(redis_server.port, f"SELECT {db}\r\nFLUSHDB\r\n".encode(), replies=2)
    if reply != b"+OK\r\n+OK\r\n":
        raise RuntimeError(f"cannot empty database {db} of the test Redis: {reply!r}")
    return redis_server.db_url(db)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    """A redis-py asyncio client on the test's emptied database."""
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    try:
        yield r
    finally:
        await r.aclose()
