"""Files written whole or not at all, and read back without trusting them.

Every store that keeps files (checkpoints, feedback requests, run records) writes
through here: the data goes to a hidden temporary file beside the target (``.<name>.*``
plus `TEMP_SUFFIX`, readable by its owner only), is flushed and fsynced, then renamed
over the target (`replace`) or linked at it (`create`, which fails when the target
exists, so of two creators exactly one wins); the directory is fsynced after. A crash
leaves the old file or the new one, and at worst a stray temporary file, which
`is_temporary` tells listings to ignore.

Without fsync (`sync=False`: a file that must survive its process, not the machine), a
file that exists is replaced by exchanging it with the new one (Linux's
``renameat2(RENAME_EXCHANGE)``), then unlinking the old: as atomic for readers as a
rename, without the write-out ext4 starts when a rename replaces a file (its
``auto_da_alloc``), which costs a hundred microseconds a file. Elsewhere, or where the
file system cannot exchange, a rename.

Reads go through `read_at_most`: only regular files (a FIFO or a device would block or
never end), and never more than the caller's bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

TEMP_PREFIX = "."
TEMP_SUFFIX = ".graflow-tmp"
Data = bytes | Sequence[bytes]


class TooLarge(ValueError):
    """A file is larger than its reader's bound."""


class NotAFile(ValueError):
    """A path holds something else than a regular file (a directory, a FIFO...)."""


def is_temporary(name: str) -> bool:
    """Whether file `name` is a temporary file of a write in progress (or of one that crashed)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def stage(path: Path, data: Data, *, sync: bool = True) -> Path:
    """`data` written (and with `sync`, fsynced) to a new temporary file beside `path`
    (its directory made if missing); the temporary file's path."""
    try:
        fd, temp = _temporary(path)
    except FileNotFoundError:  # the directory is made when first needed (a mkdir each time costs)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = _temporary(path)
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return Path(temp)


_names = itertools.count()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path`, open for writing, readable by its owner only:
    named after this process (a random tag, a counter), created exclusively (a name
    taken by a process of another host sharing the directory is skipped)."""
    for _ in range(100):
        temp = f"{path.parent}/{TEMP_PREFIX}{path.name}.{_tag}{next(_names)}{TEMP_SUFFIX}"
        try:
            return os.open(temp, _FLAGS, 0o600), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no temporary file name left", str(path))


_tag = ""  # this process's random tag (`_new_tag`)


def _new_tag() -> None:
    global _tag
    _tag = f"{os.urandom(5).hex()}-"


_new_tag()
if hasattr(os, "register_at_fork"):  # a forked child names its files with a tag of its own
    os.register_at_fork(after_in_child=_new_tag)


def replace(path: Path, data: Data, *, sync: bool = True) -> None:
    """Write `data` to `path` atomically: readers see the old file or the new one. With
    `sync` (the default) it is on disk when this returns; without, it survives the death
    of this process but not of the machine."""
    temp = stage(path, data, sync=sync)
    try:
        if sync or not _exchanged(temp, path):
            os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if sync:
        fsync_directory(path.parent)


def _exchanger() -> Callable[[bytes, bytes], int] | None:
    """Linux's renameat2 with RENAME_EXCHANGE, as a call of two paths (0: done, else
    -1 and errno); None where there is none."""
    if sys.platform != "linux":
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (before glibc 2.28)
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    return lambda a, b: int(call(at_cwd, a, at_cwd, b, exchange))


_exchange = _exchanger()


def _exchanged(temp: Path, path: Path) -> bool:
    """Put `temp` at `path` by exchanging the two, the old file then unlinked: False when
    that cannot be done (no `path` yet, or no exchange here), for a rename to do it."""
    global _exchange
    if _exchange is None:
        return False
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # a directory, a link: the rename says what it says
            return False
    except FileNotFoundError:
        return False
    old = os.fsencode(temp)
    if _exchange(old, os.fsencode(path)) != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # never here: rename from now on
            _exchange = None
        return False
    os.unlink(old)  # the old file, now at the temporary name
    return True


def create(path: Path, data: Data, *, sync: bool = True) -> bool:
    """Write `data` to `path` atomically unless `path` exists; whether it was written.
    Of several processes creating one path at once, exactly one gets True. `sync` as in
    `replace`."""
    temp = stage(path, data, sync=sync)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    if sync:
        fsync_directory(path.parent)
    return True


def read_at_most(path: Path, most: int) -> bytes | None:
    """The bytes of regular file `path`, or None when there is none; `TooLarge` past
    `most` bytes, `NotAFile` for a directory, FIFO, socket or device (opened without
    blocking, never read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise NotAFile("a directory, not a file") from None
    except OSError as exc:
        if os.path.islink(path):
            raise NotAFile("a symbolic link, not a file") from None
        raise exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile("not a regular file")
        if info.st_size > most:
            raise TooLarge(f"larger than {most} bytes ({info.st_size})")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(most + 1)
    finally:
        os.close(fd)
    if len(data) > most:  # it grew since fstat
        raise TooLarge(f"larger than {most} bytes")
    return data


def fsync_directory(directory: Path) -> None:
    """Make the names in `directory` durable. The new file is already in place, so a
    filesystem that cannot fsync directories (some network mounts, Windows) is not an error."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: Data) -> None:
    views = [memoryview(data)] if isinstance(data, bytes | bytearray | memoryview) else [memoryview(d) for d in data]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
