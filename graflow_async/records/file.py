"""Run records as JSON files in a directory (``.graflow/runs`` beside the default
``.graflow/feedback``), for `FileFeedbackStore`.

    <key>.json      the record (`records.base`), replaced atomically on each save
    <key>.cancel    present once the run was asked to stop (never written by a save)

``<key>`` is `feedback.file.file_key` of the run id. Listings read every record file,
keeping parsed records in memory by file version (inode, size, mtime), so a listing
reads only what changed since the last one; a file that is not a regular file, too
large, unreadable, malformed or of another run is corrupt: skipped, and logged once
per version. `get_run` always reads the file itself.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.exceptions import CorruptRecordError
from graflow_async.records.base import MAX_RECORD_BYTES, RunRecordError, decode_record, encode_record, page
from graflow_async.records.contract import RunRecords
from graflow_async.records.corrupt import Listing, Reports

_Version = tuple[int, int, int]
_MAX_CACHED = 100_000


class FileRunRecords(RunRecords):
    """The run records of one directory; `key` makes a file name stem of a run id."""

    def __init__(self, directory: Path, key: Callable[[str], str], *, sync: bool = True) -> None:
        self.directory = directory
        self._key = key
        self.sync = sync  # False: a record survives its process, not the machine (no fsync, no thread)
        # file name -> version, and the record or why it is corrupt
        self._cache: dict[str, tuple[_Version, dict[str, Any] | str]] = {}
        self._reports = Reports("skipped an unreadable run record")

    async def save_run(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        path = self.directory / f"{self._key(record['run_id'])}.json"
        if self.sync:
            await asyncio.to_thread(files.replace, path, data)
        else:
            files.replace(path, data, sync=False)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, run_id)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[Listing[dict[str, Any]], str | None]:
        records, skipped = await asyncio.to_thread(self._scan)
        chosen, next_cursor = page(records, status=status, workflow=workflow, limit=limit, cursor=cursor)
        return Listing(copy.deepcopy(chosen), skipped), next_cursor

    async def request_run_cancel(self, run_id: str) -> None:
        key = self._key(run_id)
        if await asyncio.to_thread((self.directory / f"{key}.json").exists):
            await asyncio.to_thread(files.replace, self.directory / f"{key}.cancel", b"{}")

    # --- in a thread ---------------------------------------------------------------------------
    def _get(self, run_id: str) -> dict[str, Any] | None:
        key = self._key(run_id)
        name = f"{key}.json"  # read afresh: file versions are only as fine as the clock
        try:
            record = self._read(name, key)
        except RunRecordError as exc:
            self._report(name, _version(self.directory / name), str(exc))
            raise CorruptRecordError("run record", run_id, str(exc)) from None
        if record is None:
            return None
        return {**record, "cancel_requested": (self.directory / f"{key}.cancel").exists()}

    def _scan(self) -> tuple[list[dict[str, Any]], list[str]]:
        try:
            names = {e.name for e in os.scandir(self.directory)}
        except FileNotFoundError:
            return [], []
        found, skipped = [], []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                record = self._load(name)
                if isinstance(record, str):
                    skipped.append(name)
                elif record is not None:
                    found.append({**record, "cancel_requested": name[:-5] + ".cancel" in names})
        for gone in [n for n in list(self._cache) if n not in names]:
            self._cache.pop(gone, None)
        return found, sorted(skipped)

    def _load(self, name: str) -> dict[str, Any] | str | None:
        """The record in file `name` (None when missing; why, when corrupt), from the cache
        when the file has not changed: the cached dict itself, which callers copy."""
        version = _version(self.directory / name)
        if version is None:
            self._cache.pop(name, None)
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            record: dict[str, Any] | str | None = self._read(name, name[: -len(".json")])
        except (RunRecordError, OSError) as exc:
            record = str(exc) if isinstance(exc, RunRecordError) else f"{type(exc).__name__}: {exc.strerror}"
            self._report(name, version, record)
        if record is None:
            return None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[name] = (version, record)
        return record

    def _read(self, name: str, key: str) -> dict[str, Any] | None:
        """The record in file `name`, which must be the run's whose key is `key`; None when
        there is no such file; `RunRecordError` saying why it is corrupt."""
        try:
            raw = files.read_at_most(self.directory / name, MAX_RECORD_BYTES)
        except (files.TooLarge, files.NotAFile) as exc:
            raise RunRecordError(str(exc)) from None
        if raw is None:
            return None
        record = decode_record(raw)
        if self._key(record["run_id"]) != key:
            raise RunRecordError("it is the record of another run")
        return record

    def _report(self, name: str, version: _Version | None, reason: str) -> None:
        path = self.directory / name
        self._reports.report(name, version, reason, path=str(path))


def _version(path: Path) -> _Version | None:
    try:
        stat = os.stat(path, follow_symlinks=False)
    except OSError:  # gone (or not ours to look at): not listed
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
