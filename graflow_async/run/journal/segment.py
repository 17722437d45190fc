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

GROW_FROM = 64 * 1024  # bytes a segment's file first takes (then doubled as it fills)
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
        self.map: mmap.mmap | None = None  # the file, mapped (`room` makes it long enough)
        self.size = 0  # bytes of frames written (a writer that copies a frame in itself moves it on)

    def put(self, data: bytes) -> None:
        """Copy frames `data` in after those written (their first check word last)."""
        view = memoryview(data)
        at = self.size
        end = at + len(data)
        mm = self.map
        if mm is None or end > len(mm):
            mm = self.room(end)
        mm[at + 8 : end] = view[8:]
        mm[at : at + 4] = view[:4]
        mm[at + 4 : at + 8] = view[4:8]
        self.size = end

    def room(self, end: int) -> mmap.mmap:
        """The mapping, made at least `end` bytes long."""
        mm = self.map
        size = max(GROW_FROM, 2 * end, 2 * len(mm) if mm is not None else 0)
        os.posix_fallocate(self.fd, 0, size)  # its blocks taken now: a full disk is an OSError here, never a fault
        if mm is not None:
            mm.close()
        self.map = mm = mmap.mmap(self.fd, size)
        return mm

    def close(self) -> None:
        """Unmap it and cut its file to the frames written."""
        if self.map is not None:
            self.map.close()
            self.map = None
            os.ftruncate(self.fd, self.size)
        os.close(self.fd)


def _create(path: Path) -> int:
    try:
        return os.open(path, _FLAGS, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, _FLAGS, 0o600)
