"""Where a durable run lives (SPEC 10): its header (what it was started with), its
journal, its owner's lease and, once it has ended, its outcome.

`FileHome`, in-process: beside the run's checkpoints.

    <checkpoints>/<run_id>/journal/run.msgpack      the header
    <checkpoints>/<run_id>/journal/outcome.msgpack  the outcome (kept until deleted)

`RedisHome`, on the run's Redis server (every key hash-tagged ``{run_id}``):

    <ns>:run:{<run_id>}:header    the header
    <ns>:run:{<run_id>}:outcome   the outcome, kept `retention` seconds

An outcome is written by the owner of the run's current epoch only (fenced, as the
journal is). Nothing read back is trusted: a header or outcome that is not a msgpack
map is a `CheckpointError` naming the run.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.checkpoints import FileCheckpointStore
from graflow_async.checkpoints.stores import open_store
from graflow_async.exceptions import CheckpointError
from graflow_async.run.journal import FileJournal, Journal
from graflow_async.run.journal.facts import JournalWriter
from graflow_async.run.journal.file import FileJournalWriter
from graflow_async.run.recording import FactWriter
from graflow_async.transports.base import Transport
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.envelope import MAX_NESTING
from graflow_async.wire.messages import TaskReply

HEADER, OUTCOME = "run.msgpack", "outcome.msgpack"
MAX_DOC = 64 * 1024 * 1024  # bytes a header or outcome may take


class Home(ABC):
    """One durable run's place (see the module docstring)."""

    run_id: str
    journal: Journal
    where: str  # for messages: the directory or the Redis namespace
    adoptable = False  # whether workers and `serve` take the run over when its driver dies (Redis)

    @abstractmethod
    async def read_header(self) -> bytes | None:
        """The header's bytes; None when no durable run has this id here."""

    @abstractmethod
    async def create(self, header: bytes, owner: str, lease: float) -> int | None:
        """Start the run: write its header and take its first epoch; None when a durable
        run of this id already exists here (it is attached to instead)."""

    @abstractmethod
    async def read_outcome(self) -> bytes | None:
        """The ended run's outcome; None while it has not ended."""

    @abstractmethod
    async def conclude(self, epoch: int, outcome: bytes, retention: float) -> None:
        """Keep `outcome` (when `epoch` still holds the run) and let the run go."""

    @abstractmethod
    async def let_go(self, epoch: int) -> None:
        """Stop driving the run without ending it: another process may take it at once."""

    async def backlog(self) -> list[TaskReply]:
        """The replies that came for the run while no driver lived (none in-process: its
        tasks ran inside the driver)."""
        return []

    @abstractmethod
    def writer(self, epoch: int) -> FactWriter:
        """What journals the run's turns while `epoch` owns it."""

    @abstractmethod
    def held(self, epoch: int, lease: float) -> contextlib.AbstractAsyncContextManager[Any]:
        """Keep the lease of `epoch` renewed while the block runs (a lost lease stops it)."""

    async def header(self) -> dict[str, Any] | None:
        return _doc(await self.read_header(), self.run_id, "header")

    async def outcome(self) -> dict[str, Any] | None:
        return _doc(await self.read_outcome(), self.run_id, "outcome")


def _doc(data: bytes | None, run_id: str, what: str) -> dict[str, Any] | None:
    if data is None:
        return None
    if len(data) > MAX_DOC:
        raise CheckpointError(f"durable run {run_id}: its {what} is over {MAX_DOC} bytes")
    try:
        doc = unpackb(data, max_nesting=MAX_NESTING)
    except Exception as exc:
        raise CheckpointError(f"durable run {run_id}: its {what} is not msgpack ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"durable run {run_id}: its {what} is not a map")
    return doc


class FileHome(Home):
    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id
        self.journal: FileJournal = FileJournal(root, run_id)
        self.where = str(root)
        self._dir = self.journal.path

    async def read_header(self) -> bytes | None:
        return _read(self._dir / HEADER)

    async def create(self, header: bytes, owner: str, lease: float) -> int | None:
        if (self._dir / HEADER).exists():
            return None
        epoch = await self.journal.begin(owner, lease)
        if epoch is None:
            return None
        files.replace(self._dir / HEADER, header, sync=self.journal.fsync)
        return epoch

    async def read_outcome(self) -> bytes | None:
        return _read(self._dir / OUTCOME)

    async def conclude(self, epoch: int, outcome: bytes, retention: float) -> None:
        self.journal.fence(epoch)
        files.replace(self._dir / OUTCOME, outcome, sync=self.journal.fsync)
        await self.journal.release(epoch)

    async def let_go(self, epoch: int) -> None:
        await self.journal.release(epoch)

    def held(self, epoch: int, lease: float) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.journal.held(epoch, lease)

    def writer(self, epoch: int) -> FactWriter:
        journal = self.journal
        if journal.fsync:
            return JournalWriter(journal, epoch, journal.next_seq)
        return FileJournalWriter(journal, epoch)


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_DOC + 1)
    except FileNotFoundError:
        return None


def home_for(run_id: str, transport: Transport | None, checkpoint_store: Any) -> Home:
    """The home of durable run `run_id`: on Redis when `transport` is Redis's, else beside
    its local checkpoints (ValueError for an S3 checkpoint store without Redis)."""
    if transport is not None and transport.keeps_journals:
        from graflow_async.run.redis_home import RedisHome
        from graflow_async.transports.redis import RedisStreamsTransport

        assert isinstance(transport, RedisStreamsTransport)
        return RedisHome(transport, run_id)
    if transport is not None and not transport.in_process:
        raise ValueError(f"a durable run keeps its journal on Redis or in a directory, not with {transport!r}")
    store = open_store(checkpoint_store)
    if not isinstance(store, FileCheckpointStore):
        raise ValueError(
            "a durable run without Redis journals beside its checkpoints: give a local checkpoint directory "
            "(an S3 checkpoint store needs a Redis transport)"
        )
    return FileHome(store.root, run_id)


@contextlib.asynccontextmanager
async def nothing_held() -> AsyncIterator[None]:
    """A lease renewed by someone else (on Redis: the run's own hold on its route)."""
    yield None


def pack(doc: dict[str, Any]) -> bytes:
    return packb(doc, max_nesting=MAX_NESTING)
