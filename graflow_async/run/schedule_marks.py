"""Where the schedulers of a schedule keep the last tick they started (SPEC 11), so that
after a restart `catch_up` knows what was missed, and ``GET /api/schedules`` names the
last run.

- `RedisMarks`: ``<ns>:schedule:<name>:last`` on the runs' Redis server, the tick in
  milliseconds since the Unix epoch, raised by one script and never lowered (several
  processes run one schedule), kept without expiry.
- `FileMarks`: one small msgpack file per schedule in a directory (default
  ``.graflow/schedules``), written atomically, for schedules whose runs are in-process.

A mark is read back as untrusted: anything but a whole number of milliseconds in range
is logged and taken as no mark (the scheduler then starts from now).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.define.ticks import from_ms, tick_ms
from graflow_async.feedback.file import file_key
from graflow_async.logs import LibraryLog
from graflow_async.wire.codec import packb, unpackb

log = LibraryLog()
DEFAULT_DIRECTORY = ".graflow/schedules"
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_FILE = 4096  # bytes a mark file may take

_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


def checked_ms(value: Any, name: str) -> int | None:
    """A stored mark as milliseconds, or None (logged) when it is not one."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isdigit() and len(value) <= 15:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MS:
        return value
    log.warning("a schedule's last tick is unreadable: taken as none", schedule=name, value=repr(value)[:80])
    return None


class Marks(ABC):
    """The last tick started of each schedule."""

    @abstractmethod
    async def last(self, name: str) -> datetime | None:
        """The last tick of schedule `name` a scheduler started; None when none is known."""

    @abstractmethod
    async def advance(self, name: str, tick: datetime) -> None:
        """Remember `tick` for schedule `name` unless a later one is remembered."""


class RedisMarks(Marks):
    """Marks on the Redis server of `transport` (a `RedisStreamsTransport`), in its namespace."""

    def __init__(self, transport: Any) -> None:
        from graflow_async.transports.redis.scripts import Script  # the redis extra: only here

        self.transport = transport
        self._raise = Script(_RAISE)

    async def last(self, name: str) -> datetime | None:
        raw = await self.transport.conn.call("GET", self.transport.keys.schedule_last(name))
        ms = None if raw is None else checked_ms(raw, name)
        return None if ms is None else from_ms(ms)

    async def advance(self, name: str, tick: datetime) -> None:
        await self._raise(self.transport.conn, [self.transport.keys.schedule_last(name)], [tick_ms(tick)])


class FileMarks(Marks):
    """Marks as files under `directory`, ``<name>.msgpack`` (a hash when the name is not a
    safe file name)."""

    def __init__(self, directory: str | Path = DEFAULT_DIRECTORY) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{file_key(name)}.msgpack"

    def _read(self, name: str) -> int | None:
        try:
            with open(self._path(name), "rb") as f:
                data = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return None
        try:
            doc = unpackb(data) if len(data) <= MAX_FILE else None
        except Exception:
            doc = None
        if not isinstance(doc, dict) or doc.get("name") != name:
            return checked_ms(doc, name)  # logged as unreadable
        return checked_ms(doc.get("last"), name)

    def _write(self, name: str, ms: int) -> None:
        current = self._read(name)
        if current is not None and current >= ms:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        files.replace(self._path(name), packb({"name": name, "last": ms}), sync=False)

    async def last(self, name: str) -> datetime | None:
        ms = await asyncio.to_thread(self._read, name)
        return None if ms is None else from_ms(ms)

    async def advance(self, name: str, tick: datetime) -> None:
        await asyncio.to_thread(self._write, name, tick_ms(tick))
