"""Run records in Redis, for `RedisFeedbackStore`; the keys are named in
`transports.keys` (``<ns>:runs:record:<run_id>``, ``<ns>:runs:index``,
``<ns>:runs:cancel:<run_id>``).

Every key expires `ttl` seconds after its last write, like the store's requests. A
listing walks the index newest first in batches and reads the records of each batch
with one script (`redis_read`), which looks at each key's type and size before its
value; ids whose record expired leave the index, and a record that holds another type,
is too large, malformed or another run's is corrupt: skipped, and logged once per value.
"""

from __future__ import annotations

import hashlib
from typing import Any

from graflow_async.exceptions import CorruptRecordError
from graflow_async.logs import as_text
from graflow_async.records.base import (
    MAX_RECORD_BYTES,
    RunRecordError,
    check_limit,
    decode_cursor,
    decode_record,
    encode_cursor,
    encode_record,
    matches,
)
from graflow_async.records.contract import RunRecords
from graflow_async.records.corrupt import Listing, Reports
from graflow_async.records.redis_read import Found, Unreadable, read
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import MalformedReply, Refused

_BATCH = 200
Entry = tuple[tuple[float, str], dict[str, Any]]  # a record and where it sorts


class RedisRunRecords(RunRecords):
    """The run records of one namespace, through `conn` (not closed here)."""

    def __init__(self, conn: RedisConnection, keys: Keys, ttl: int) -> None:
        self.conn = conn
        self.keys = keys
        self.ttl = ttl
        self._reports = Reports("skipped an unreadable run record")

    async def save_run(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        run_id = record["run_id"]
        index = self.keys.run_index
        answers = await self.conn.transaction(
            [
                ("SET", self.keys.run_record(run_id), data, "EX", self.ttl),
                ("ZADD", index, repr(float(record["started_at"])), run_id),
                ("EXPIRE", index, self.ttl),
            ]
        )
        for answer in answers:
            if isinstance(answer, Refused) and answer.code == "WRONGTYPE":  # the index: listings say so
                self._reports.report(index, "WRONGTYPE", "the index holds another type", key=index)
            elif isinstance(answer, Refused):
                raise answer

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        [found] = await read(self.conn, [self.keys.run_record(run_id)], most=MAX_RECORD_BYTES)
        if found is None:
            return None
        record = self._decode(run_id, found)
        if isinstance(record, Unreadable):
            raise CorruptRecordError("run record", run_id, record.reason)
        cancel = await self.conn.call("EXISTS", self.keys.run_cancel(run_id))
        return {**record, "cancel_requested": bool(cancel)}

    async def request_run_cancel(self, run_id: str) -> None:
        if await self.conn.call("EXISTS", self.keys.run_record(run_id)):
            await self.conn.call("SET", self.keys.run_cancel(run_id), b"1", "EX", self.ttl)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[Listing[dict[str, Any]], str | None]:
        limit = check_limit(limit)
        after = decode_cursor(cursor) if cursor else None
        found: list[Entry] = []
        skipped: list[str] = []
        offset = 0
        while len(found) <= limit:
            entries = await self._index_page(after, offset)
            if entries is None:  # the index is not a sorted set: nothing can be listed
                return Listing((), [self.keys.run_index]), None
            offset += len(entries)
            found += await self._batch([e for e in entries if after is None or e < after], status, workflow, skipped)
            if len(entries) < _BATCH:
                break
        chosen = found[:limit]
        next_cursor = encode_cursor(chosen[-1][0]) if len(found) > limit else None
        return Listing((record for _, record in chosen), skipped), next_cursor

    async def _index_page(self, after: tuple[float, str] | None, offset: int) -> list[tuple[float, str]] | None:
        """A batch of (started_at, run id) from the index, newest first, from `offset`."""
        command = (
            "ZREVRANGEBYSCORE",
            self.keys.run_index,
            repr(after[0]) if after else "+inf",
            "-inf",
            "WITHSCORES",
            "LIMIT",
            offset,
            _BATCH,
        )
        try:
            found: list[tuple[float, str]] = await self.conn.call(*command, parse=_scored)
            return found
        except Refused as exc:
            if exc.code != "WRONGTYPE":
                raise
            self._reports.report(
                self.keys.run_index, "WRONGTYPE", "the index holds another type", key=self.keys.run_index
            )
            return None

    async def _batch(
        self, entries: list[tuple[float, str]], status: str | None, workflow: str | None, skipped: list[str]
    ) -> list[Entry]:
        """The records of index entries `entries` that match the filters, in order."""
        if not entries:
            return []
        values = await read(self.conn, [self.keys.run_record(run_id) for _, run_id in entries], most=MAX_RECORD_BYTES)
        cancels = await self.conn.pipeline([("EXISTS", self.keys.run_cancel(run_id)) for _, run_id in entries])
        found, gone = [], []
        for entry, value, cancel in zip(entries, values, cancels, strict=True):
            if value is None:
                gone.append(entry[1])
                continue
            record = self._decode(entry[1], value)
            if isinstance(record, Unreadable):
                skipped.append(entry[1])
            elif matches(record, status, workflow):
                found.append((entry, {**record, "cancel_requested": cancel is True or cancel == 1}))
        if gone:
            await self.conn.call("ZREM", self.keys.run_index, *gone)  # expired records
        return found

    def _decode(self, run_id: str, found: Found) -> dict[str, Any] | Unreadable:
        """The checked record of `run_id` read at its key, or why it is unreadable (logged)."""
        try:
            if isinstance(found, Unreadable):
                raise RunRecordError(found.reason)
            assert found is not None
            [value] = found
            if value is None:
                raise RunRecordError("no value")
            record = decode_record(value)
            if record["run_id"] != run_id:
                raise RunRecordError("it is the record of another run")
            return record
        except RunRecordError as exc:
            key = self.keys.run_record(run_id)
            version = found if isinstance(found, Unreadable) else hashlib.sha256(repr(found).encode()).hexdigest()
            self._reports.report(key, version, str(exc), key=key)
            return Unreadable(str(exc))


def _scored(answer: Any) -> list[tuple[float, str]]:
    """A WITHSCORES answer (RESP2: member, score, ...; RESP3: [member, score] pairs)."""
    if not isinstance(answer, list):
        raise MalformedReply("ZREVRANGEBYSCORE answered with something else than a list")
    try:
        pairs = answer if all(isinstance(a, list) for a in answer) else zip(answer[::2], answer[1::2], strict=True)
        return [(float(score), as_text(member)) for member, score in pairs]
    except (TypeError, ValueError):
        raise MalformedReply("ZREVRANGEBYSCORE answered with a score that is not a number") from None
