"""User-controlled checkpoints: the file format and the stores that hold them.

(`CheckpointManager` and `resume`, which run a workflow, are the run's: import them
from `graflow_async`.)"""

from __future__ import annotations

from graflow_async.checkpoints.format import (
    FORMAT_VERSION,
    SIGNING_KEY_ENV,
    decode_checkpoint,
    encode_checkpoint,
    signing_key_from_env,
)
from graflow_async.checkpoints.locations import load_checkpoint
from graflow_async.checkpoints.stores import (
    CheckpointStore,
    FileCheckpointStore,
    S3CheckpointStore,
    open_store,
    store_for_location,
)

__all__ = [
    "FORMAT_VERSION",
    "SIGNING_KEY_ENV",
    "CheckpointStore",
    "FileCheckpointStore",
    "S3CheckpointStore",
    "decode_checkpoint",
    "encode_checkpoint",
    "load_checkpoint",
    "open_store",
    "signing_key_from_env",
    "store_for_location",
]
