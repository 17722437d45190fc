"""Feedback requests as JSON files in a directory, shared by every process that uses it.

Layout of `directory` (default ``.graflow/feedback``)::

    <key>.json          {"request": {...}, "response": {...} | null, "status": "..."}
    <key>.settled       the claim on the answer (or cancellation): a hard link that only
                        one responder can create, whatever the number of processes
    runs/<key>.json     how to resume a suspended run

Run records of the web app (`file_runs`) live in `runs_directory`: by default ``runs``
beside a directory named ``feedback`` (so ``.graflow/runs`` for the default
``.graflow/feedback``), else ``run-records`` inside the directory (never beside a
directory the store was not told about).

``<key>`` is the feedback (or run) id itself when it is a safe file name, else ``%``
followed by the SHA-256 of the id. Files are written through `graflow_async.files`
(a temporary file, fsynced, then linked or renamed into place), so a reader never sees
half a file.

Waiters in this process are woken directly. Waiters in other processes are woken by
an inotify watch on the directory (`watchfiles.awatch`) that runs only while someone
in the process waits.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import os
import re
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from graflow_async import files
from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackError,
    FeedbackNotFoundError,
    FeedbackValidationError,
)
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.memory import Waiters, wait_settled
from graflow_async.feedback.models import (
    ANSWERED,
    CANCELLED,
    PENDING,
    FeedbackRequest,
    FeedbackResponse,
    validate_response,
)
from graflow_async.logs import LibraryLog
from graflow_async.records.file import FileRunRecords

log = LibraryLog()

# Lower case only, so that ids differing by case cannot meet on a case-insensitive disk.
_SAFE_NAME = re.compile(r"[a-z0-9_-][a-z0-9_.-]{0,127}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_WATCH_STEP_MS = 20  # how long the watcher lets a burst of file events settle
_WATCH_DEBOUNCE_MS = 200
_WATCH_TIMEOUT_MS = 1000  # bounds how long cancelling the watcher's thread can take


def default_runs_directory(directory: Path) -> Path:
    """Where a store on `directory` keeps run records unless told: see the module docstring."""
    return directory.parent / "runs" if directory.name == "feedback" else directory / "run-records"


def file_key(identifier: str) -> str:
    """A file name stem for `identifier`: itself when safe, else a hash of it."""
    if _SAFE_NAME.fullmatch(identifier) and identifier.split(".")[0] not in _RESERVED:
        return identifier
    return "%" + hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()


class FileFeedbackStore(FeedbackStore):
    """Requests and answers as files under `directory`; several processes may share it.

    Exactly one of several concurrent `respond`/`cancel` calls wins, even across
    processes: the others raise `FeedbackAlreadyAnsweredError`. Use as ``async with``
    (or call `aclose`) so that the directory watcher is stopped.
    """

    def __init__(
        self, directory: str | os.PathLike[str] = ".graflow/feedback", *,
        runs_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.runs_directory = Path(runs_directory) if runs_directory is not None else default_runs_directory(
            self.directory
        )
        self._runs = FileRunRecords(self.runs_directory, file_key)
        self._waiters = Waiters()
        self._waiting: Counter[str] = Counter()  # feedback ids waited on in this process
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_stop: threading.Event | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        #: record files the latest `list` left out because they could not be read
        self.unreadable: builtins.list[str] = []
        self._reported: dict[str, tuple[int, int] | None] = {}  # unreadable files logged, and their versions

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        record = {"request": request.to_dict(), "response": None, "status": request.status}
        try:
            data = _dumps(record)
        except (TypeError, ValueError) as exc:
            raise FeedbackValidationError(f"the request is not JSON-serializable: {exc}", field="metadata") from exc
        existing = await asyncio.to_thread(self._publish_new, file_key(request.feedback_id), data)
        return request if existing is None else _decode(existing)[0]

    async def list(self, run_id: str | None = None, status: str | None = None) -> builtins.list[FeedbackRequest]:
        """The requests, oldest first. A record file that cannot be read or decoded is
        left out, logged once (per file version) and named in `unreadable`."""
        requests, unreadable = await asyncio.to_thread(self._scan)
        self.unreadable = unreadable
        found = [
            request for request in requests
            if (run_id is None or request.run_id == run_id) and (status is None or request.status == status)
        ]
        return sorted(found, key=lambda r: r.created_at)

    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        record = await asyncio.to_thread(self._read, file_key(feedback_id))
        if record is None:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        return _decode(record)

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request, _ = await self.get(feedback_id)
        _check_pending(request)
        answer = validate_response(request, response)
        await self._settle(request, ANSWERED, answer)
        return answer

    async def cancel(self, feedback_id: str) -> None:
        request, _ = await self.get(feedback_id)
        _check_pending(request)
        await self._settle(request, CANCELLED, None)

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        self._waiting[feedback_id] += 1
        try:
            await self._start_watching()
            return await wait_settled(self, self._waiters, feedback_id, timeout)
        finally:
            self._waiting[feedback_id] -= 1
            if self._waiting[feedback_id] <= 0:
                del self._waiting[feedback_id]
            if not self._waiting:
                self._stop_watching()

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        path = self.directory / "runs" / f"{file_key(run_id)}.json"
        if record is None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        else:
            await asyncio.to_thread(files.replace, path, _dumps({"run_id": run_id, "record": record}))

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        path = self.directory / "runs" / f"{file_key(run_id)}.json"
        data = await asyncio.to_thread(_load, path)
        return None if data is None else dict(data["record"])

    async def save_run(self, record: dict[str, Any]) -> None:
        await self._runs.save(record)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return await self._runs.get(run_id)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        return await self._runs.select(status, workflow, limit, cursor)

    async def request_run_cancel(self, run_id: str) -> None:
        await self._runs.request_cancel(run_id)

    async def aclose(self) -> None:
        self._stop_watching()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    # -- settling ---------------------------------------------------------------------

    async def _settle(self, request: FeedbackRequest, status: str, answer: FeedbackResponse | None) -> None:
        record = {
            "request": replace(request, status=status).to_dict(),
            "response": None if answer is None else answer.to_dict(),
            "status": status,
        }
        key = file_key(request.feedback_id)
        if not await asyncio.to_thread(self._claim, key, _dumps(record)):
            raise FeedbackAlreadyAnsweredError(f"feedback request {request.feedback_id!r} was settled already")
        self._waiters.settle(request.feedback_id)

    # -- blocking file operations, run in threads ------------------------------------

    def _publish_new(self, key: str, data: bytes) -> dict[str, Any] | None:
        """Put a new record in place; the existing record if there is one."""
        if files.create(self.directory / f"{key}.json", data):
            return None
        return self._read(key)

    def _claim(self, key: str, data: bytes) -> bool:
        """Claim the settlement (exactly one claimant wins), then publish the record."""
        if not files.create(self.directory / f"{key}.settled", data):
            return False
        files.replace(self.directory / f"{key}.json", data)
        return True

    def _read(self, key: str) -> dict[str, Any] | None:
        record = _load(self.directory / f"{key}.json")
        if record is not None and record["status"] == PENDING:
            # Claimed but not yet published (or the claimant died in between): the claim holds.
            settled = _load(self.directory / f"{key}.settled")
            if settled is not None:
                return settled
        return record

    def _scan(self) -> tuple[builtins.list[FeedbackRequest], builtins.list[str]]:
        """Every request on disk, and the names of the record files that are unreadable."""
        try:
            names = [e.name for e in os.scandir(self.directory) if e.is_file()]
        except FileNotFoundError:
            return [], []
        requests, unreadable = [], []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                try:
                    record = self._read(name[: -len(".json")])
                    if record is not None:
                        requests.append(_decode(record)[0])
                except Exception as exc:  # one bad file must not hide every other request
                    unreadable.append(name)
                    self._report_unreadable(name, exc)
        return requests, sorted(unreadable)

    def _report_unreadable(self, name: str, exc: Exception) -> None:
        try:
            stat = os.stat(self.directory / name)
            version: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = None
        if self._reported.get(name) != version:  # not again at every listing
            self._reported[name] = version
            _bound(self._reported, 10_000)
            log.warning("skipped an unreadable feedback record", path=str(self.directory / name),
                        error=f"{type(exc).__name__}: {str(exc)[:300]}")

    # -- watching other processes' answers -------------------------------------------

    async def _start_watching(self) -> None:
        if self._watch_task is None:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        if self._watch_task is None or self._watch_task.done():
            self._watch_stop = threading.Event()
            self._watch_task = asyncio.create_task(self._watch(self._watch_stop), name="graflow-feedback-watch")
            self._watch_task.add_done_callback(_report_failure)
        # awatch registers its inotify watch in the task's first step, before it first
        # awaits; that step is ahead of us in the loop's queue. Once we resume, every
        # change made after our caller reads the files is seen by the watcher.
        await asyncio.sleep(0)

    def _stop_watching(self) -> None:
        task, stop = self._watch_task, self._watch_stop
        self._watch_task = self._watch_stop = None
        if task is not None and stop is not None:
            stop.set()  # the watcher thread notices within one step and awatch returns
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _watch(self, stop: threading.Event) -> None:
        async for changes in awatch(
            self.directory, watch_filter=_is_record, debounce=_WATCH_DEBOUNCE_MS, step=_WATCH_STEP_MS,
            stop_event=stop, rust_timeout=_WATCH_TIMEOUT_MS, recursive=False,
        ):
            changed = {Path(path).name.rsplit(".", 1)[0] for _, path in changes}
            for feedback_id in [f for f in self._waiting if file_key(f) in changed]:
                self._waiters.settle(feedback_id)


def _check_pending(request: FeedbackRequest) -> None:
    if request.status != PENDING:
        raise FeedbackAlreadyAnsweredError(f"feedback request {request.feedback_id!r} is {request.status}")


def _decode(record: dict[str, Any]) -> tuple[FeedbackRequest, FeedbackResponse | None]:
    try:
        request = FeedbackRequest.from_dict({**record["request"], "status": record["status"]})
        response = record["response"]
        return request, None if response is None else FeedbackResponse.from_dict(response)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # FeedbackValidationError is a ValueError
        raise FeedbackError(f"malformed feedback record: {exc}") from exc


def _bound(seen: dict[str, Any], most: int) -> None:
    while len(seen) > most:
        del seen[next(iter(seen))]


def _is_record(change: Change, path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.endswith((".json", ".settled"))


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("feedback directory watcher failed; other processes' answers are not noticed",
                    error=repr(task.exception()))


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False).encode()


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        loaded = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FeedbackError(f"corrupt feedback file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise FeedbackError(f"corrupt feedback file {path}: a JSON {type(loaded).__name__}, not an object")
    return loaded
