"""The newest epoch of a file journal's run, as eight bytes of memory the processes of
one machine share (`mmap` of ``<journal>/epoch``): an owner publishes its epoch there
when it claims the run, and an older owner's fence reads it on every append without a
system call. A file system that does not keep `mmap` coherent between hosts (NFS) is
covered by the lease files, which `FileJournal.fence` also looks at every `STAT_EVERY`
seconds."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

WORD = struct.Struct(">Q")
STAT_EVERY = 0.1  # seconds between looks at the lease files by a fence that has the word


class EpochWord:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.view: mmap.mmap | None = None  # the word, mapped read-only (None: this process watches none)
        self.epoch, self.word = 0, b""  # what this process published last, and as the word reads

    def publish(self, epoch: int) -> None:
        """Make `epoch` the run's newest, and watch the word from now on."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        try:
            if os.fstat(fd).st_size < WORD.size:
                os.ftruncate(fd, WORD.size)
            os.pwrite(fd, WORD.pack(epoch), 0)
            self.close()
            self.view = mmap.mmap(fd, WORD.size, mmap.MAP_SHARED, mmap.PROT_READ)
            self.epoch, self.word = epoch, WORD.pack(epoch)
        finally:
            os.close(fd)

    def newest(self) -> int | None:
        """The newest epoch published (None: this process watches no word)."""
        mm = self.view
        return None if mm is None else int(WORD.unpack_from(mm)[0])

    def holds(self, epoch: int) -> bool:
        """Whether `epoch`, published by this process, is still the newest (a compare of
        eight bytes; `FileJournal.append_now` makes it inline)."""
        mm = self.view
        return mm is not None and epoch == self.epoch and mm[:8] == self.word

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
            self.epoch, self.word = 0, b""
