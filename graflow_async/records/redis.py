"""Run records in Redis, for `RedisFeedbackStore`. Keys, under ``<ns>:runs:``::

    <ns>:runs:record:<run_id>   the record (JSON, `runrecords`)
    <ns>:runs:index             sorted set of run ids by started_at
    <ns>:runs:cancel:<run_id>   set once the run was asked to stop (never by a save)

Every key expires `ttl` seconds after its last write, like the store's requests. A
listing walks the index newest first in batches and reads the records of each batch
in one round trip; ids whose record expired leave the index, and a record that is too
large or malformed is skipped and logged once per value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from graflow_async.logs import LibraryLog
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

log = LibraryLog()
_BATCH = 200
_MAX_REPORTED = 10_000


class RedisRunRecords:
    """The run records of one namespace; `mapped` maps Redis errors to TransportError."""

    def __init__(
        self, client: Any, namespace: str, ttl: int, mapped: Callable[[], AbstractAsyncContextManager[None]]
    ) -> None:
        self.client = client
        self.prefix = f"{namespace}:runs"
        self.ttl = ttl
        self._mapped = mapped
        self._reported: dict[str, str] = {}  # run id -> digest of the bad value logged

    @property
    def index(self) -> str:
        return f"{self.prefix}:index"

    def _record_key(self, run_id: str) -> str:
        return f"{self.prefix}:record:{run_id}"

    def _cancel_key(self, run_id: str) -> str:
        return f"{self.prefix}:cancel:{run_id}"

    async def save(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        async with self._mapped(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._record_key(record["run_id"]), data, ex=self.ttl)
            pipe.zadd(self.index, {record["run_id"]: float(record["started_at"])})
            pipe.expire(self.index, self.ttl)
            await pipe.execute()

    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self._mapped(), self.client.pipeline(transaction=False) as pipe:
            pipe.get(self._record_key(run_id))
            pipe.exists(self._cancel_key(run_id))
            value, cancel = await pipe.execute()
        record = None if value is None else self._decode(run_id, value)
        return None if record is None else {**record, "cancel_requested": bool(cancel)}

    async def request_cancel(self, run_id: str) -> None:
        async with self._mapped():
            if await self.client.exists(self._record_key(run_id)):
                await self.client.set(self._cancel_key(run_id), b"1", ex=self.ttl)

    async def select(
        self, status: str | None, workflow: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = check_limit(limit)
        after = decode_cursor(cursor) if cursor else None
        found: list[tuple[tuple[float, str], dict[str, Any]]] = []
        offset = 0
        async with self._mapped():
            while len(found) <= limit:
                entries = await self.client.zrevrangebyscore(
                    self.index, after[0] if after else "+inf", "-inf", start=offset, num=_BATCH, withscores=True
                )
                offset += len(entries)
                keys = [(score, _text(member)) for member, score in entries]
                found += await self._batch([k for k in keys if after is None or k < after], status, workflow)
                if len(entries) < _BATCH:
                    break
        chosen = found[:limit]
        next_cursor = encode_cursor(chosen[-1][0]) if len(found) > limit else None
        return [record for _, record in chosen], next_cursor

    async def _batch(
        self, keys: list[tuple[float, str]], status: str | None, workflow: str | None
    ) -> list[tuple[tuple[float, str], dict[str, Any]]]:
        """The records of index entries `keys` that match the filters, in order."""
        if not keys:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for _, run_id in keys:
                pipe.get(self._record_key(run_id))
                pipe.exists(self._cancel_key(run_id))
            replies = await pipe.execute()
        found, gone = [], []
        for i, key in enumerate(keys):
            value, cancel = replies[2 * i], replies[2 * i + 1]
            if value is None:
                gone.append(key[1])
                continue
            record = self._decode(key[1], value)
            if record is not None and matches(record, status, workflow):
                found.append((key, {**record, "cancel_requested": bool(cancel)}))
        if gone:
            await self.client.zrem(self.index, *gone)  # expired records
        return found

    def _decode(self, run_id: str, value: bytes) -> dict[str, Any] | None:
        try:
            if len(value) > MAX_RECORD_BYTES:
                raise RunRecordError(f"larger than {MAX_RECORD_BYTES} bytes ({len(value)})")
            record = decode_record(value)
            if record["run_id"] != run_id:
                raise RunRecordError(f"it names run {record['run_id']!r}")
            return record
        except RunRecordError as exc:
            digest = hashlib.sha256(value).hexdigest()
            if self._reported.get(run_id) != digest:
                if len(self._reported) >= _MAX_REPORTED:
                    self._reported.clear()
                self._reported[run_id] = digest
                log.warning("skipped an unreadable run record", key=self._record_key(run_id)[:300],
                            error=str(exc)[:300])
            return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
