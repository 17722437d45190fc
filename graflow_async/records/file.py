"""Run records as JSON files in a directory (``.graflow/runs`` beside the default
``.graflow/feedback``), for `FileFeedbackStore`.

    <key>.json      the record (`runrecords`), replaced atomically on each save
    <key>.cancel    present once the run was asked to stop (never written by a save)

``<key>`` is `file.file_key` of the run id. Listings read every record file, keeping
parsed records in memory by file version (inode, size, mtime), so a listing reads
only what changed since the last one; a file too large, unreadable or malformed is
skipped and logged once per version. `get` always reads the file itself.
"""

from __future__ import annotations

import asyncio
import copy
import os
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.logs import LibraryLog
from graflow_async.records.base import MAX_RECORD_BYTES, RunRecordError, decode_record, encode_record, page

log = LibraryLog()
_Version = tuple[int, int, int]
_MAX_CACHED = 100_000


class FileRunRecords:
    """The run records of one directory; each method does blocking I/O in a thread."""

    def __init__(self, directory: Path, key: Any) -> None:
        self.directory = directory
        self._key = key  # run id -> file name stem
        self._cache: dict[str, tuple[_Version, dict[str, Any] | None]] = {}  # name -> version, record (None: bad)

    async def save(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        await asyncio.to_thread(files.replace, self.directory / f"{self._key(record['run_id'])}.json", data)

    async def get(self, run_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, self._key(run_id))

    async def select(
        self, status: str | None, workflow: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        records = await asyncio.to_thread(self._scan)
        chosen, next_cursor = page(records, status=status, workflow=workflow, limit=limit, cursor=cursor)
        return copy.deepcopy(chosen), next_cursor

    async def request_cancel(self, run_id: str) -> None:
        key = self._key(run_id)
        if await asyncio.to_thread((self.directory / f"{key}.json").exists):
            await asyncio.to_thread(files.replace, self.directory / f"{key}.cancel", b"{}")

    # --- in a thread ---------------------------------------------------------------------------
    def _get(self, key: str) -> dict[str, Any] | None:
        path = self.directory / f"{key}.json"  # read afresh: file versions are only as fine as the clock
        try:
            record = self._read(path, path.stat().st_size)
        except FileNotFoundError:
            return None
        if record is None:
            return None
        return {**record, "cancel_requested": (self.directory / f"{key}.cancel").exists()}

    def _scan(self) -> list[dict[str, Any]]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        names = {e.name for e in entries}
        found = []
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                record = self._load(entry.name)
                if record is not None:
                    found.append({**record, "cancel_requested": entry.name[:-5] + ".cancel" in names})
        for gone in [n for n in list(self._cache) if n not in names]:
            self._cache.pop(gone, None)
        return found

    def _load(self, name: str) -> dict[str, Any] | None:
        """The record in file `name` (None when missing or bad), from the cache when the
        file has not changed: the cached dict itself, which callers copy before handing out."""
        path = self.directory / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._cache.pop(name, None)
            return None
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        record = self._read(path, stat.st_size)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[name] = (version, record)
        return record

    def _read(self, path: Path, size: int) -> dict[str, Any] | None:
        try:
            if size > MAX_RECORD_BYTES:
                raise RunRecordError(f"larger than {MAX_RECORD_BYTES} bytes ({size})")
            with open(path, "rb") as file:
                return decode_record(file.read(MAX_RECORD_BYTES + 1))
        except FileNotFoundError:
            return None
        except (OSError, RunRecordError) as exc:
            log.warning("skipped an unreadable run record", path=str(path), error=f"{type(exc).__name__}: {exc}"[:300])
            return None
