"""Checkpoints as files in a local directory, written atomically."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from graflow_async.checkpoints.stores.base import CheckpointStore, check_name
from graflow_async.exceptions import CheckpointError

__all__ = ["FileCheckpointStore"]

_TMP_PREFIX = "."
_TMP_SUFFIX = ".graflow-tmp"


class FileCheckpointStore(CheckpointStore):
    """Checkpoints as files under `directory`; locations are absolute path strings.

    Writes go to a temporary file in the target's directory which is flushed, fsynced
    and renamed over the target, then the directory is fsynced: a crash leaves either
    the old file or the new one, and at worst a stray hidden ``*.graflow-tmp`` file,
    which `list` ignores. Files are created readable by their owner only. Blocking
    file I/O runs in a worker thread.
    """

    def __init__(self, directory: str | os.PathLike[str], *, signing_key: bytes | str | None = None) -> None:
        super().__init__(signing_key=signing_key)
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))

    def __repr__(self) -> str:
        return f"FileCheckpointStore({str(self.root)!r})"

    def location(self, name: str) -> str:
        return str(self.root.joinpath(*check_name(name).parts))

    async def write(self, location: str, data: bytes | Sequence[bytes]) -> str:
        self._check_open()
        path = self._path(location)
        try:
            await asyncio.to_thread(_atomic_write, path, data)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {exc}") from exc
        return str(path)

    async def create(self, location: str, data: bytes) -> bool:
        self._check_open()
        path = self._path(location)
        try:
            return await asyncio.to_thread(_exclusive_write, path, data)
        except OSError as exc:
            raise CheckpointError(f"cannot create {str(path)!r}: {exc}") from exc

    async def read(self, location: str) -> bytes:
        self._check_open()
        path = self._path(location)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise CheckpointError(f"checkpoint not found: {str(path)!r}") from exc
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc

    async def list(self, prefix: str = "") -> builtins.list[str]:
        self._check_open()
        directory = prefix.rpartition("/")[0]
        start = self.root.joinpath(*check_name(directory).parts) if directory else self.root
        return await asyncio.to_thread(_list_files, self.root, start, prefix)

    async def delete(self, location: str) -> None:
        self._check_open()
        path = self._path(location)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot delete checkpoint {str(path)!r}: {exc}") from exc

    def _path(self, location: str) -> Path:
        path = Path(os.path.expanduser(location))
        if path.is_absolute():
            return path
        return self.root.joinpath(*check_name(location).parts)


def _temporary(path: Path, data: bytes | Sequence[bytes]) -> str:
    """`data` written and fsynced to a new temporary file beside `path`; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _atomic_write(path: Path, data: bytes | Sequence[bytes]) -> None:
    tmp = _temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _exclusive_write(path: Path, data: bytes) -> bool:
    """Write a temporary file, then link it at `path`: the link fails if `path` exists,
    so readers never see a partial file and only one creator wins."""
    tmp = _temporary(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_directory(path.parent)
    return True


def _write_all(fd: int, data: bytes | Sequence[bytes]) -> None:
    views = [memoryview(data)] if isinstance(data, bytes | bytearray | memoryview) else [memoryview(d) for d in data]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable. The new file is already in place, so a filesystem that
    # cannot fsync directories (some network mounts, Windows) is not an error.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _list_files(root: Path, start: Path, prefix: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(start):
        relative_dir = PurePosixPath(Path(dirpath).relative_to(root))
        for filename in filenames:
            if filename.startswith(_TMP_PREFIX) and filename.endswith(_TMP_SUFFIX):
                continue
            name = (relative_dir / filename).as_posix()
            if name.startswith(prefix):
                found.append(os.path.join(dirpath, filename))
    return sorted(found)
