"""Checkpoint stores: one small contract, a local-directory and an S3 implementation."""

from __future__ import annotations

import os
from typing import Any

from graflow_async.checkpoints.stores.base import CheckpointStore
from graflow_async.checkpoints.stores.file import FileCheckpointStore
from graflow_async.checkpoints.stores.s3 import S3CheckpointStore, split_s3_uri
from graflow_async.exceptions import CheckpointError

__all__ = [
    "DEFAULT_CHECKPOINT_DIRECTORY",
    "CheckpointStore",
    "FileCheckpointStore",
    "S3CheckpointStore",
    "open_store",
    "store_for_location",
]

DEFAULT_CHECKPOINT_DIRECTORY = ".graflow/checkpoints"


def open_store(spec: str | os.PathLike[str] | CheckpointStore | None = None, **options: Any) -> CheckpointStore:
    """The store `spec` describes, built with `options` (``signing_key=``, S3 options).

    None: a `FileCheckpointStore` in ``.graflow/checkpoints`` (relative to the current
    directory); ``"s3://bucket/prefix"``: an `S3CheckpointStore`; a `CheckpointStore`:
    itself (options are then refused with ``TypeError``); anything else: a directory.
    """
    if isinstance(spec, CheckpointStore):
        if options:
            raise TypeError(f"store options {sorted(options)} cannot apply to an existing {spec!r}")
        return spec
    if spec is None:
        return FileCheckpointStore(DEFAULT_CHECKPOINT_DIRECTORY, **options)
    if isinstance(spec, str) and spec.startswith("s3://"):
        bucket, prefix = split_s3_uri(spec)
        return S3CheckpointStore(bucket, prefix, **options)
    return FileCheckpointStore(spec, **options)


def store_for_location(location: str, **options: Any) -> CheckpointStore:
    """A store that can read and write exactly `location` (an ``s3://`` URI or a path).

    The store is rooted at the location's parent (its S3 "directory" or its directory).
    """
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        if not key or key.endswith("/"):
            raise CheckpointError(f"S3 location {location!r} names no object key")
        return S3CheckpointStore(bucket, key.rpartition("/")[0], **options)
    if not location:
        raise CheckpointError("empty checkpoint location")
    path = os.path.abspath(os.path.expanduser(location))
    return FileCheckpointStore(os.path.dirname(path), **options)
