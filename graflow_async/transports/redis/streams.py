"""Run streams on Redis (SPEC 12): what tasks on workers stream, kept on the server where
any process reads it, and where it outlives the driver (a takeover keeps it).

    <ns>:run:{<run_id>}:stream   entries t (task id), a (attempt), d (the chunk, msgpack),
                                 n (its number: 1, 2, ...); an entry ``end`` closes it when
                                 the run ends (not when it suspends); capped at about `CAP`
                                 entries, oldest dropped; expires `KEPT` seconds after its
                                 last append (and `KEPT_ENDED` after its end)
    <ns>:run:{<run_id>}:stream:n how many were appended (numbers the next ones)

Appends come in batches (one script per batch, which numbers them, coalesced with the
worker's other writes of the same turn); a reader reads from where it left off with
blocking reads, and tells by the numbers how many it missed past the cap.
Nothing read is trusted: an entry that is not a stream item is skipped (and logged),
never handed to a reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from graflow_async.logs import LibraryLog, as_text
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.batch import Item, WriteBatcher
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.envelope import MAX_NESTING
from graflow_async.wire.messages import MAX_CHUNK, StreamItem

log = LibraryLog()
_APPEND = """
local n = redis.call('INCRBY', KEYS[2], (#ARGV - 2) / 3)
local i = n - (#ARGV - 2) / 3
for a = 3, #ARGV, 3 do
  i = i + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[a], 'a', ARGV[a + 1], 'd', ARGV[a + 2], 'n', i)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return n
"""
CAP = 10_000
KEPT, KEPT_ENDED = 7 * 86400, 86400  # seconds a stream outlives its last append, and its end
READ_BLOCK_MS = 1000


def key_of(keys: Keys, run_id: str) -> str:
    return f"{keys.namespace}:run:{{{run_id}}}:stream"


def packed(data: Any) -> bytes:
    """The chunk as it is kept: msgpack; TypeError for what cannot be kept, ValueError past
    `MAX_CHUNK` bytes."""
    try:
        raw = packb(data, max_nesting=MAX_NESTING)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise TypeError(f"a streamed chunk cannot be kept ({exc})") from exc
    if len(raw) > MAX_CHUNK:
        raise ValueError(f"a streamed chunk of {len(raw)} bytes is larger than the {MAX_CHUNK} allowed")
    return raw


class RunStreams:
    """The run streams of one namespace."""

    def __init__(self, conn: RedisConnection, keys: Keys, writes: WriteBatcher) -> None:
        self.conn = conn
        self.keys = keys
        self.writes = writes

    async def append(self, run_id: str, items: Sequence[tuple[str, int, Any]]) -> None:
        """Append `(task_id, attempt, chunk)` items, in order, in one round trip."""
        if not items:
            return
        key = key_of(self.keys, run_id)
        args: list[Any] = [CAP, KEPT]
        for task_id, attempt, data in items:
            args += [task_id, attempt, packed(data)]
        # the script in full (EVAL): it rides in the batch of the turn, where a NOSCRIPT could not be retried
        command: Item = ("EVAL", _APPEND, 2, key, f"{key}:n", *args)
        await self.writes.write([command])

    async def end(self, run_id: str) -> None:
        key = key_of(self.keys, run_id)
        await self.writes.write([("XADD", key, "MAXLEN", "~", CAP, "*", "end", 1), ("EXPIRE", key, KEPT_ENDED)])

    async def read(self, run_id: str, after: str | None) -> AsyncIterator[StreamItem]:
        """The items after the entry `after` (None: from the start), until the end entry,
        or until the stream is gone (expired with the run's keys)."""
        key = key_of(self.keys, run_id)
        last: bytes = (after or "0").encode()
        number = 0 if after is None else None  # the number of the last item read (None: not known)
        if after is not None and not replies.is_entry_id(last):
            raise ValueError(f"after must be the id of an item of run {run_id!r}, got {after!r}")
        while True:
            found = await self.conn.blocking(
                "XREAD",
                "COUNT",
                1000,
                "BLOCK",
                READ_BLOCK_MS,
                "STREAMS",
                key,
                last,
                parse=replies.streams,
                block_ms=READ_BLOCK_MS,
            )
            entries = found.get(key.encode(), [])
            for entry_id, fields in entries:
                last = entry_id
                if b"end" in fields:
                    return
                item = _item(run_id, entry_id, fields)
                if item is None:
                    continue
                n = _number_of(fields)
                if number is not None and n is not None and n > number + 1:
                    item = item._replace(missed=n - number - 1)  # dropped past the cap before it was read
                number = n
                yield item
            if not entries and not await self.conn.call("EXISTS", key):
                return  # expired (or never was): nothing more will come


def _number_of(fields: dict[bytes, Any]) -> int | None:
    raw = fields.get(b"n")
    return int(raw) if isinstance(raw, bytes) and raw.isdigit() and len(raw) < 19 else None


def _item(run_id: str, entry_id: bytes, fields: dict[bytes, Any]) -> StreamItem | None:
    task_id, attempt, data = fields.get(b"t"), fields.get(b"a"), fields.get(b"d")
    try:
        if not isinstance(task_id, bytes) or len(task_id) > 512 or not isinstance(data, bytes):
            raise ValueError("not a stream item")
        number = int(attempt) if isinstance(attempt, bytes) and attempt.isdigit() else 0
        if number < 1:
            raise ValueError("no attempt")
        if len(data) > MAX_CHUNK:
            raise ValueError("a chunk past the cap")
        return StreamItem(entry_id.decode(), task_id.decode(), number, unpackb(data, max_nesting=MAX_NESTING))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        log.warning("skipped a stream entry", run_id=run_id, id=as_text(entry_id), reason=str(exc)[:200])
        return None
