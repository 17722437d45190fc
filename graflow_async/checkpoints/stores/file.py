"""Checkpoints as files in a local directory, written atomically."""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from graflow_async import files
from graflow_async.checkpoints.stores.base import CheckpointStore, check_name
from graflow_async.exceptions import CheckpointError

__all__ = ["FileCheckpointStore"]


class FileCheckpointStore(CheckpointStore):
    """Checkpoints as files under `directory`; locations are absolute path strings.

    Writes are atomic (`graflow_async.files`: a temporary file in the target's
    directory, fsynced, renamed over the target): a crash leaves either the old file or
    the new one, and at worst a stray hidden ``*.graflow-tmp`` file, which `list`
    ignores. Files are created readable by their owner only. Blocking file I/O runs in
    a worker thread. `sync=False` (a durable run's lease files, which only need to outlive
    its process): no fsync, and the small file operations run in the event loop.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, signing_key: bytes | str | None = None, sync: bool = True
    ) -> None:
        super().__init__(signing_key=signing_key)
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))
        self.sync = sync

    async def _io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.sync:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FileCheckpointStore({str(self.root)!r})"

    def location(self, name: str) -> str:
        return str(self.root.joinpath(*check_name(name).parts))

    async def write(self, location: str, data: bytes | Sequence[bytes]) -> str:
        self._check_open()
        path = self._path(location)
        try:
            await self._io(files.replace, path, data, sync=self.sync)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {exc}") from exc
        return str(path)

    async def create(self, location: str, data: bytes) -> bool:
        self._check_open()
        path = self._path(location)
        try:
            return bool(await self._io(files.create, path, data, sync=self.sync))
        except OSError as exc:
            raise CheckpointError(f"cannot create {str(path)!r}: {exc}") from exc

    async def read(self, location: str) -> bytes:
        self._check_open()
        path = self._path(location)
        try:
            return bytes(await self._io(path.read_bytes))
        except FileNotFoundError as exc:
            raise CheckpointError(f"checkpoint not found: {str(path)!r}") from exc
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc

    async def list(self, prefix: str = "") -> builtins.list[str]:
        self._check_open()
        directory = prefix.rpartition("/")[0]
        start = self.root.joinpath(*check_name(directory).parts) if directory else self.root
        found: builtins.list[str] = await self._io(_list_files, self.root, start, prefix)
        return found

    async def delete(self, location: str) -> None:
        self._check_open()
        path = self._path(location)
        try:
            await self._io(path.unlink, missing_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot delete checkpoint {str(path)!r}: {exc}") from exc

    def _path(self, location: str) -> Path:
        path = Path(os.path.expanduser(location))
        if path.is_absolute():
            return path
        return self.root.joinpath(*check_name(location).parts)


def _list_files(root: Path, start: Path, prefix: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(start):
        relative_dir = PurePosixPath(Path(dirpath).relative_to(root))
        for filename in filenames:
            if files.is_temporary(filename):
                continue
            name = (relative_dir / filename).as_posix()
            if name.startswith(prefix):
                found.append(os.path.join(dirpath, filename))
    return sorted(found)
