"""The checkpoint store contract: where checkpoint bytes live.

A store maps *locations* (strings: an absolute path, ``s3://bucket/key``) to bytes.
It knows nothing about the checkpoint format; it only carries the `signing_key` the
format layer signs and verifies with.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import PurePosixPath
from types import TracebackType

from graflow_async.checkpoints.format import signing_key_from_env
from graflow_async.exceptions import CheckpointError

__all__ = ["CheckpointStore"]


class CheckpointStore(ABC):
    """Reads and writes checkpoint bytes under a root (a directory, an S3 prefix).

    Every method raises `CheckpointError` (never a foreign exception) when the
    operation fails, with a message naming the location, and once the store is closed.
    Locations are the strings `location`, `write` and `list` return; a location that is
    not in the store's own form (not absolute, not an ``s3://`` URI) is taken as a name
    relative to the root.
    """

    signing_key: bytes | None
    """Key checkpoints are signed and verified with; None means unsigned."""

    def __init__(self, *, signing_key: bytes | str | None = None) -> None:
        if isinstance(signing_key, str):
            signing_key = signing_key.encode()
        self.signing_key = signing_key if signing_key else signing_key_from_env()
        self._closed = False

    @abstractmethod
    def location(self, name: str) -> str:
        """The location of relative `name` (``"run1/1.ckpt"``) under the store's root.

        Raises `CheckpointError` if `name` is empty, absolute or contains ``..``.
        """

    @abstractmethod
    async def write(self, location: str, data: bytes | Sequence[bytes]) -> str:
        """Store `data` (bytes, or byte strings to write one after the other) at
        `location` atomically, replacing what was there; return it.

        Readers see either the previous bytes or all of `data`, never a mix, even if
        the process dies mid-write.
        """

    @abstractmethod
    async def create(self, location: str, data: bytes) -> bool:
        """Store `data` at `location` only if nothing is there, atomically; whether it
        did. Of several processes creating one location at once, exactly one succeeds
        (the run leases that make `resume` safe rely on it)."""

    @abstractmethod
    async def read(self, location: str) -> bytes:
        """The bytes at `location`; `CheckpointError` naming it if there are none."""

    @abstractmethod
    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Locations whose name relative to the root starts with `prefix`, sorted.

        `prefix` is a plain string prefix, as in S3: ``"run1"`` also matches
        ``"run10/1.ckpt"``; use ``"run1/"`` for one directory.
        """

    @abstractmethod
    async def delete(self, location: str) -> None:
        """Remove `location`; deleting a location that does not exist is not an error."""

    async def aclose(self) -> None:
        """Release the store's resources; idempotent. Later calls raise `CheckpointError`."""
        self._closed = True

    async def __aenter__(self) -> CheckpointStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"{self!r} is closed")


def check_name(name: str) -> PurePosixPath:
    """Validate a store-relative name and return it as a path."""
    path = PurePosixPath(name)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise CheckpointError(f"invalid checkpoint name {name!r}: it must be a non-empty relative path without '..'")
    return path
