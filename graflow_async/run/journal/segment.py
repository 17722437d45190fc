"""One segment of a file journal as its owner writes it: a file mapped into memory
(`mmap`, shared), frames copied in. A write is a copy into the page cache, not a system
call: what the process wrote survives its death as a `write` would, and with fsync
(`FileJournal(fsync=True)`) reaches the disk as one would.

The file is made longer ahead of the frames (`GROW_FROM` bytes, then doubled), its
blocks allocated then (a full disk is an `OSError` there, never a fault in the copy), its
unwritten rest zeros; it is cut to the frames written when the segment is closed. A
frame is copied with its check word (bytes 4..8 of its header, never zero: `frames`)
last, so a frame whose copy a crash cut short, like the unwritten rest, reads as the
journal's end (`frames.parse`). (A copy-on-write file system may still want blocks as
the copy lands, and a full one then faults the process: keep such journals on another.)
Only the segment's owner ever shortens it: a process that took the run over leaves it
as it is (a former owner may still have it mapped, and writing past the end of a
shortened file would kill that process).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from zlib import crc32

from graflow_async.run.journal.frames import HEADER, LENGTH, UNCHECKED

GROW_FROM = 64 * 1024  # bytes a segment's file first takes (then doubled as it fills)
_unchecked_into, _check_word = UNCHECKED.pack_into, LENGTH.pack
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class Segment:
    """Segment file `path`, new: a leftover of that name (made by a former owner that
    wrote no whole record into it, or the next sequence would be past it) is replaced."""

    def __init__(self, path: Path) -> None:
        try:
            self.fd = _create(path)
        except FileExistsError:
            path.unlink()
            self.fd = _create(path)
        self._map: mmap.mmap | None = None
        self.size = 0  # bytes of frames written

    def put(self, data: bytes) -> None:
        """Copy frames `data` in after those written (their first check word last)."""
        view = memoryview(data)
        self._copy(view[:4], view[8:], view[4:8])

    def put_body(self, body: bytes) -> None:
        """Copy one frame of `body` in after those written: the body, its header but for
        the check word, then the check word (`frames.frame_body`: a run's hot path)."""
        size = len(body)
        at = self.size
        start, end = at + HEADER.size, at + HEADER.size + size
        mm = self._map
        if mm is None or end > len(mm):
            mm = self._grow(end)
        mm[start:end] = body
        _unchecked_into(mm, at, size, crc32(body))
        mm[at + 4 : at + 8] = _check_word(size ^ 0xFFFFFFFF)  # frames.check_word, inline (a hot path)
        self.size = end

    def _copy(self, head: memoryview, rest: memoryview, check: memoryview) -> None:
        at = self.size
        end = at + 8 + len(rest)
        mm = self._map
        if mm is None or end > len(mm):
            mm = self._grow(end)
        mm[at + 8 : end] = rest
        mm[at : at + 4] = head
        mm[at + 4 : at + 8] = check
        self.size = end

    def _grow(self, end: int) -> mmap.mmap:
        mm = self._map
        size = max(GROW_FROM, 2 * end, 2 * len(mm) if mm is not None else 0)
        os.posix_fallocate(self.fd, 0, size)  # its blocks taken now: a full disk is an OSError here, never a fault
        if mm is not None:
            mm.close()
        self._map = mm = mmap.mmap(self.fd, size)
        return mm

    def close(self) -> None:
        """Unmap it and cut its file to the frames written."""
        if self._map is not None:
            self._map.close()
            self._map = None
            os.ftruncate(self.fd, self.size)
        os.close(self.fd)


def _create(path: Path) -> int:
    try:
        return os.open(path, _FLAGS, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, _FLAGS, 0o600)
