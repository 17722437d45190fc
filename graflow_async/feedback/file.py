"""Feedback requests as JSON files in a directory, shared by every process that uses it.

Layout of `directory` (default ``.graflow/feedback``)::

    <key>.json          {"request": {...}, "response": {...} | null, "status": "..."}
    <key>.settled       the claim on the answer (or cancellation): a file that only one
                        responder can create, whatever the number of processes
    runs/<key>.json     {"run_id": ..., "record": {...}}: how to resume a suspended run

Run records of the web app (`records.file`) live in `runs_directory`: by default
``runs`` beside a directory named ``feedback`` (so ``.graflow/runs`` for the default
``.graflow/feedback``), else ``run-records`` inside the directory (never beside a
directory the store was not told about).

``<key>`` is the feedback (or run) id itself when it is a safe file name, else ``%``
followed by the SHA-256 of the id. Files are written through `graflow_async.files`
(a temporary file, fsynced, then linked or renamed into place), so a reader never sees
half a file, and read through it (regular files only, bounded). A record that is not
a regular file, too large, not JSON, of the wrong shape or of another id is corrupt
(`feedback.contracts`).

Waiters in this process are woken directly; waiters in other processes by a watch on
the directory (`file_watch`).
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.exceptions import (
    CorruptRecordError,
    FeedbackAlreadyAnsweredError,
    FeedbackCorruptError,
    FeedbackNotFoundError,
)
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.file_watch import DirectoryWatch
from graflow_async.feedback.models import ANSWERED, CANCELLED, PENDING, FeedbackRequest, FeedbackResponse
from graflow_async.feedback.models import validate_response as validate
from graflow_async.feedback.stored import (
    MAX_RECORD_BYTES,
    MAX_SUSPENSION_BYTES,
    Bad,
    check_suspension,
    decode,
    decode_suspension,
    decode_text,
    dumps,
    encode_request,
    encode_response,
    loads,
)
from graflow_async.feedback.waiters import Waiters, wait_settled
from graflow_async.records.contract import DelegatedRunRecords
from graflow_async.records.corrupt import Listing, Reports
from graflow_async.records.file import FileRunRecords

# Lower case only, so that ids differing by case cannot meet on a case-insensitive disk.
_SAFE_NAME = re.compile(r"[a-z0-9_-][a-z0-9_.-]{0,127}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
Row = tuple[FeedbackRequest, FeedbackResponse | None]


def default_runs_directory(directory: Path) -> Path:
    """Where a store on `directory` keeps run records unless told: see the module docstring."""
    return directory.parent / "runs" if directory.name == "feedback" else directory / "run-records"


def file_key(identifier: str) -> str:
    """A file name stem for `identifier`: itself when safe, else a hash of it."""
    if _SAFE_NAME.fullmatch(identifier) and identifier.split(".")[0] not in _RESERVED:
        return identifier
    return "%" + hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()


class FileFeedbackStore(DelegatedRunRecords, FeedbackStore):
    """Requests and answers as files under `directory`; several processes may share it.

    Exactly one of several concurrent `respond`/`cancel` calls wins, even across
    processes: the others raise `FeedbackAlreadyAnsweredError`. Use as ``async with``
    (or call `aclose`) so that the directory watcher is stopped.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] = ".graflow/feedback",
        *,
        runs_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.runs_directory = (
            Path(runs_directory) if runs_directory is not None else default_runs_directory(self.directory)
        )
        self.run_records = FileRunRecords(self.runs_directory, file_key)
        self._waiters = Waiters()
        self._watch = DirectoryWatch(self.directory, self._waiters, file_key)
        self._reports = Reports("skipped an unreadable feedback record")

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        text = encode_request(request)
        data = f'{{"request":{text},"response":null,"status":"{PENDING}"}}'.encode()
        if await asyncio.to_thread(files.create, self.directory / f"{file_key(request.feedback_id)}.json", data):
            return decode_text(text, None, PENDING, request.feedback_id)[0]  # a copy, as stored
        return (await self.get(request.feedback_id))[0]

    async def list(self, run_id: str | None = None, status: str | None = None) -> Listing[FeedbackRequest]:
        requests, skipped = await asyncio.to_thread(self._scan)
        found = [
            request
            for request in requests
            if (run_id is None or request.run_id == run_id) and (status is None or request.status == status)
        ]
        return Listing(sorted(found, key=lambda r: r.created_at), skipped)

    async def get(self, feedback_id: str) -> Row:
        row = await asyncio.to_thread(self._read, file_key(feedback_id), feedback_id)
        if row is None:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        return row

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request, _ = await self.get(feedback_id)
        _check_pending(request)
        answer = validate(request, response)
        await self._settle(request, ANSWERED, answer)
        return answer

    async def cancel(self, feedback_id: str) -> None:
        request, _ = await self.get(feedback_id)
        _check_pending(request)
        await self._settle(request, CANCELLED, None)

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        return await self._watch.waiting(feedback_id, lambda: wait_settled(self, self._waiters, feedback_id, timeout))

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        path = self._suspension_path(run_id)
        if record is None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        else:
            data = f'{{"run_id":{dumps(run_id)},"record":{check_suspension(record)}}}'.encode()
            await asyncio.to_thread(files.replace, path, data)

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._read_suspension, run_id)

    async def aclose(self) -> None:
        await self._watch.aclose()

    # -- settling ---------------------------------------------------------------------

    async def _settle(self, request: FeedbackRequest, status: str, answer: FeedbackResponse | None) -> None:
        response = "null" if answer is None else encode_response(answer)
        data = f'{{"request":{encode_request(request)},"response":{response},"status":"{status}"}}'.encode()
        key = file_key(request.feedback_id)
        if not await asyncio.to_thread(self._claim, key, data):
            raise FeedbackAlreadyAnsweredError(f"feedback request {request.feedback_id!r} was settled already")
        self._waiters.settle(request.feedback_id)

    def _claim(self, key: str, data: bytes) -> bool:
        """Claim the settlement (exactly one claimant wins: the link fails when the claim
        exists), then publish the record: one file written, linked as both names."""
        temp = files.stage(self.directory / f"{key}.settled", data)
        try:
            os.link(temp, self.directory / f"{key}.settled")
        except FileExistsError:
            temp.unlink(missing_ok=True)
            return False
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        os.replace(temp, self.directory / f"{key}.json")
        files.fsync_directory(self.directory)
        return True

    # -- reading, in a thread ---------------------------------------------------------

    def _read(self, key: str, feedback_id: str | None = None) -> Row | None:
        """The request in ``<key>.json`` (of `feedback_id` when given), or None when there
        is no such file; `FeedbackCorruptError`, logged, when it cannot be read."""
        label = feedback_id if feedback_id is not None else f"{key}.json"
        try:
            record = self._load(f"{key}.json")
            if record is None:
                return None
            if record[2] == PENDING:
                # Claimed but not yet published (or the claimant died in between): the claim holds.
                record = self._load(f"{key}.settled") or record
            row = decode(*record, label, feedback_id)
            if feedback_id is None and file_key(row[0].feedback_id) != key:
                raise FeedbackCorruptError(label, "it is the record of another feedback id")
        except Bad as exc:
            self._report(f"{key}.json", str(exc))
            raise FeedbackCorruptError(label, str(exc)) from None
        except FeedbackCorruptError as exc:
            self._report(f"{key}.json", exc.reason)
            raise
        return row

    def _load(self, name: str) -> tuple[Any, Any, Any] | None:
        """The request, response and status of record file `name`, or None; `Bad`."""
        try:
            raw = files.read_at_most(self.directory / name, MAX_RECORD_BYTES)
        except (files.TooLarge, files.NotAFile) as exc:
            raise Bad(str(exc)) from None
        if raw is None:
            return None
        record = loads(raw, MAX_RECORD_BYTES)
        if not isinstance(record, dict) or not {"request", "response", "status"} <= record.keys():
            raise Bad("it is not a feedback record (request, response, status)")
        return record["request"], record["response"], record["status"]

    def _scan(self) -> tuple[builtins.list[FeedbackRequest], builtins.list[str]]:
        """Every request on disk, and the names of the record files that cannot be read."""
        try:
            names = [e.name for e in os.scandir(self.directory)]
        except FileNotFoundError:
            return [], []
        requests, skipped = [], []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                try:
                    row = self._read(name[: -len(".json")])
                except (FeedbackCorruptError, OSError) as exc:  # one bad file must not hide the others
                    if isinstance(exc, OSError):
                        self._report(name, f"{type(exc).__name__}: {exc.strerror}")
                    skipped.append(name)
                    continue
                if row is not None:
                    requests.append(row[0])
        return requests, sorted(skipped)

    def _read_suspension(self, run_id: str) -> dict[str, Any] | None:
        path = self._suspension_path(run_id)
        try:
            raw = files.read_at_most(path, MAX_SUSPENSION_BYTES + 2048)
            if raw is None:
                return None
            data = loads(raw, MAX_SUSPENSION_BYTES + 2048)
            if not isinstance(data, dict) or data.get("run_id") != run_id or "record" not in data:
                raise Bad("it is not the suspension record of this run")
            return decode_suspension(dumps(data["record"]), run_id)
        except (Bad, files.TooLarge, files.NotAFile, CorruptRecordError) as exc:
            reason = exc.reason if isinstance(exc, CorruptRecordError) else str(exc)
            self._reports.report(str(path), _version(path), reason, path=str(path))
            raise CorruptRecordError("suspension", run_id, reason) from None

    def _suspension_path(self, run_id: str) -> Path:
        return self.directory / "runs" / f"{file_key(run_id)}.json"

    def _report(self, name: str, reason: str) -> None:
        path = self.directory / name
        self._reports.report(name, _version(path), reason, path=str(path))


def _version(path: Path) -> tuple[int, int, int] | None:
    """Which version of file `path` this is, to log each corrupt one once."""
    try:
        stat = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _check_pending(request: FeedbackRequest) -> None:
    if request.status != PENDING:
        raise FeedbackAlreadyAnsweredError(f"feedback request {request.feedback_id!r} is {request.status}")
