"""`FileJournal`: a durable run's journal as append-only files beside its checkpoints.

    <dir>/<run_id>/lease.<epoch>             the owner's lease (`checkpoints.runlock`: the
                                              same lease a resume holds, so one owner per run)
    <dir>/<run_id>/journal/log.<first seq>   records (`frames`), one copy per batch into the
                                              file mapped in memory (`segment`)
    <dir>/<run_id>/journal/snapshot.<upto>   the state after facts [0, upto), written atomically

An append first checks that no newer epoch holds the run (`fence`): a fenced-out owner
writes nothing. Files are written without fsync by default: the journal survives the
death of its process (the page cache keeps the bytes), not of the machine; `fsync=True`
makes each batch reach the disk before the append returns. Each owner writes segments
of its own (a new one at its claim and after each compaction); what a former owner left
half-written at the end of its last is left out when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zlib import crc32

from graflow_async import files
from graflow_async.checkpoints import FileCheckpointStore, runlock
from graflow_async.exceptions import RunAlreadyRunningError
from graflow_async.run.journal.base import Fenced, Journal, Replay
from graflow_async.run.journal.epoch_word import STAT_EVERY, EpochWord
from graflow_async.run.journal.frames import (
    HEADER,
    LENGTH,
    TWO,
    UNCHECKED,
    JournalCorrupt,
    JournalError,
    Record,
    batch,
    parse,
)
from graflow_async.run.journal.segment import Segment

_LOG, _SNAPSHOT = "log.", "snapshot."
_SMALL_BYTES = 1 << 20  # a turn of two facts up to this size is framed here (a larger one: `batch`)
_two, _length, _unchecked_into, _HEAD = TWO.pack, LENGTH.pack, UNCHECKED.pack_into, HEADER.size
_tails: dict[bytes, bytes] = {}  # a step fact (the same bytes turn after turn), with its length before it


class FileJournal(Journal):
    def __init__(self, directory: str | os.PathLike[str], run_id: str, *, fsync: bool = False) -> None:
        self.run_id = run_id
        self.root = Path(directory)
        self.path = self.root / run_id / "journal"
        self.fsync = fsync
        self._store = FileCheckpointStore(self.root, sync=fsync)  # its lease: as durable as the journal
        self._owner = ""
        self._segment_open: Segment | None = None
        self._next = 0
        self._newer: dict[int, str] = {}  # epoch -> where the next epoch's lease would be
        self._word = EpochWord(self.path / "epoch")  # the newest epoch, in shared memory
        self._stat_due = 0.0  # when the fence looks at the lease files again

    @property
    def next_seq(self) -> int:
        """How many facts the journal holds (as this owner knows)."""
        return self._next

    # --- ownership -----------------------------------------------------------------------------
    async def claim(self, owner: str, lease: float) -> int | None:
        try:
            epoch = await runlock.acquire(self._store, self.run_id, owner, lease)
        except RunAlreadyRunningError:
            return None
        self._owner = owner
        self._word.publish(epoch)  # before reading: an older owner's next append is fenced
        self._close_segment()
        self._next = (await self.read()).next_seq
        return epoch

    async def begin(self, owner: str, lease: float) -> int | None:
        """`claim` for a run being created: nothing to read back (None while another
        process holds the run's lease)."""
        try:
            epoch = await runlock.acquire(self._store, self.run_id, owner, lease)
        except RunAlreadyRunningError:
            return None
        self._owner = owner
        self._word.publish(epoch)
        return epoch

    async def renew(self, epoch: int, lease: float) -> bool:
        return await runlock.renew(self._store, self.run_id, epoch, self._owner, lease)

    def held(self, epoch: int, lease: float) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """Renew lease `epoch` while the block runs; a lost lease cancels the block with
        `RunAlreadyRunningError` (`checkpoints.runlock.held`)."""
        return runlock.held(self._store, self.run_id, epoch, self._owner, lease)

    async def release(self, epoch: int) -> None:
        self._close_segment()
        if self._word.holds(epoch):  # no newer owner: the lease file is this owner's own
            runlock.release_file(runlock.lease_location(self._store, self.run_id, epoch), self.run_id, self._owner)
        else:
            await runlock.release(self._store, self.run_id, epoch, self._owner)

    def fence(self, epoch: int) -> None:
        """`Fenced` once a newer epoch holds the run (its owner must write nothing more):
        the epoch word (`epoch_word`), and every `STAT_EVERY` seconds (always, without a
        word) a `stat` of the next epoch's lease file."""
        newest = self._word.newest()
        now = time.monotonic()
        if newest is not None:
            if newest > epoch:
                self._fenced(newest)
            if now < self._stat_due:
                return
        self._stat_due = now + STAT_EVERY
        newer = self._newer.get(epoch)
        if newer is None:
            newer = self._newer[epoch] = runlock.lease_location(self._store, self.run_id, epoch + 1)
        if os.access(newer, os.F_OK):  # (no exception made for the usual answer: absent)
            self._fenced(epoch + 1)

    def _fenced(self, newer: int) -> None:
        raise Fenced(self.run_id, f"run {self.run_id} was taken over (epoch {newer}): this owner writes nothing")

    # --- facts ---------------------------------------------------------------------------------
    async def append(self, epoch: int, facts: Sequence[bytes]) -> int:
        if self.fsync and facts:
            self.append_now(epoch, facts)
            segment = self._segment_open
            assert segment is not None
            await asyncio.to_thread(os.fsync, segment.fd)
            return self._next
        return self.append_now(epoch, facts)

    def append_now(self, epoch: int, facts: Sequence[bytes]) -> int:
        """`append` but for its fsync (the journal's own, without `fsync`): one copy into
        the segment. The usual turn, a fact and its step, is framed and copied in here (a
        run's hot path: nothing called that need not be)."""
        count = len(facts)
        if not count:
            return self._next
        word = self._word  # `word.holds(epoch)`, inline
        view = word.view
        if view is None or epoch != word.epoch or view[:8] != word.word or time.monotonic() >= self._stat_due:
            self.fence(epoch)  # else: fenced in already
        try:
            segment = self._segment_open
            if segment is None:
                segment = self._segment()
            if count != 2 or len(facts[0]) + len(facts[1]) > _SMALL_BYTES:
                segment.put(batch(self._next, epoch, facts))
            else:  # `batch` of the two, copied body first and check word last (`segment`)
                fact, step = facts
                tail = _tails.get(step)
                if tail is None:
                    tail = _length(len(step)) + step
                    if len(_tails) < 16:
                        _tails[step] = tail
                body = _two(self._next, epoch, 2, len(fact)) + fact + tail
                size, at = len(body), segment.size
                end = at + _HEAD + size
                mm = segment.map
                if mm is None or end > len(mm):
                    mm = segment.room(end)
                mm[at + _HEAD : end] = body
                _unchecked_into(mm, at, size, crc32(body))
                mm[at + 4 : at + 8] = _length(size ^ 0xFFFFFFFF)
                segment.size = end
        except OSError as exc:  # no room for its segment (a full disk): nothing of the batch counts
            raise JournalError(self.run_id, f"journal of run {self.run_id}: cannot write it ({exc})") from exc
        self._next += count
        return self._next

    async def compact(self, epoch: int, snapshot: bytes, upto: int) -> None:
        self.fence(epoch)
        self.path.mkdir(parents=True, exist_ok=True)
        files.replace(self.path / f"{_SNAPSHOT}{upto:012d}", snapshot)
        self._close_segment()  # later facts go to a new segment
        segments = self._segments()
        for i, (_start, file) in enumerate(segments):
            later = segments[i + 1][0] if i + 1 < len(segments) else self._next
            if later <= upto:  # every record of it is in the snapshot
                file.unlink(missing_ok=True)
        for start, file in self._files(_SNAPSHOT):
            if start < upto:
                file.unlink(missing_ok=True)

    async def read(self) -> Replay:
        return await asyncio.to_thread(self._read)

    def _read(self) -> Replay:
        snapshots = self._files(_SNAPSHOT)
        upto, snapshot = 0, None
        if snapshots:
            upto, file = snapshots[-1]
            snapshot = file.read_bytes()
        facts: list[bytes] = []
        segments = self._segments()
        parsed = [self._segment_records(start, file) for start, file in segments]
        for i, (start, file, records, torn) in enumerate(parsed):
            if i + 1 < len(parsed):
                records = self._followed(file, start, records, torn, parsed[i + 1])
            facts.extend(r.fact for r in records if r.seq >= upto)
        if segments and segments[0][0] > upto:
            raise JournalCorrupt(
                self.run_id, f"journal of run {self.run_id}: facts {upto}..{segments[0][0]} are missing"
            )
        epoch = self._newest_epoch()
        return Replay(snapshot, upto, facts, epoch)

    def _segment_records(self, start: int, file: Path) -> tuple[int, Path, list[Record], bool]:
        """A segment's records, and whether it ends in a torn write."""
        data = file.read_bytes()
        records, used = parse(data, self.run_id, first_seq=start)
        return start, file, records, used < len(data)

    def _followed(
        self, file: Path, start: int, records: list[Record], torn: bool, after: tuple[int, Path, list[Record], bool]
    ) -> list[Record]:
        """The records of segment `file` that count, given the segment `after` it: those
        before its start. Past it may lie what an older owner wrote for a moment after a
        newer one claimed the run (left out, a torn last write included); a gap, or more of
        the same owner's, is `JournalCorrupt`."""
        next_start, _, next_records, _ = after
        kept = [r for r in records if r.seq < next_start]
        if start + len(kept) != next_start:
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: {file.name} does not reach {next_start}")
        newer = next_records[0].epoch if next_records else 0
        older = kept[-1].epoch if kept else 0
        stale = records[len(kept) :]
        if (stale or torn) and not (newer > older and all(r.epoch < newer for r in stale)):
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: {file.name} runs past the next segment")
        return kept

    def _newest_epoch(self) -> int:
        found = [int(p.name[6:]) for p in (self.root / self.run_id).glob("lease.*") if p.name[6:].isdigit()]
        return max(found, default=0)

    # --- files ---------------------------------------------------------------------------------
    def _files(self, prefix: str) -> list[tuple[int, Path]]:
        if not self.path.is_dir():
            return []
        out = []
        for file in self.path.iterdir():
            suffix = file.name[len(prefix) :] if file.name.startswith(prefix) else ""
            if suffix.isdigit():
                out.append((int(suffix), file))
        return sorted(out)

    def _segments(self) -> list[tuple[int, Path]]:
        return self._files(_LOG)

    def _segment(self) -> Segment:
        segment = self._segment_open = Segment(self.path / f"{_LOG}{self._next:012d}")
        return segment

    def _close_segment(self) -> None:
        if self._segment_open is not None:
            segment, self._segment_open = self._segment_open, None
            segment.close()

    async def aclose(self) -> None:
        self._close_segment()
        self._word.close()


class FileJournalWriter:
    """The `run.recording.FactWriter` of a `FileJournal` without fsync: its append is a
    plain call (`write_now`)."""

    def __init__(self, journal: FileJournal, epoch: int) -> None:
        self.journal = journal
        self.epoch = epoch
        self.write_now = functools.partial(journal.append_now, epoch)

    @property
    def next_seq(self) -> int:
        return self.journal.next_seq

    async def write(self, records: list[bytes], sends: list[Any], consumed: bytes | None = None) -> list[Any]:
        self.write_now(records)
        return sends

    async def compact(self, snapshot: bytes, upto: int) -> None:
        await self.journal.compact(self.epoch, snapshot, upto)


__all__ = ["FileJournal", "FileJournalWriter", "JournalError"]
