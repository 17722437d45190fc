"""Where a checkpoint lies and how it is read back: through the store that holds it (its
endpoint, credentials and signing key), or one made for its location."""

from __future__ import annotations

import os
import posixpath
from typing import Any

from graflow_async.checkpoints.format import decode_checkpoint
from graflow_async.checkpoints.stores import CheckpointStore, store_for_location
from graflow_async.plan.snapshot import check_document


async def load_checkpoint(
    location: str, *, store: CheckpointStore | None = None, **store_options: Any
) -> dict[str, Any]:
    """Read, verify and decode the run checkpoint at `location`, through `store` when the
    location lies in it (its endpoint and credentials apply), else a store made for it.
    `store`'s signing key applies wherever the location lies: a store that signs never
    loads an unsigned checkpoint, or one signed with another key, from elsewhere."""
    if store is not None and holds(store, location):
        data = await store.read(absolute(location))
        doc = decode_checkpoint(data, key=store.signing_key, source=location)
        return check_document(doc, location)
    own = store_for_location(location, **store_options)
    try:
        data = await own.read(absolute(location))
    finally:
        await own.aclose()
    key = store.signing_key if store is not None else own.signing_key
    return check_document(decode_checkpoint(data, key=key, source=location), location)


def holds(store: CheckpointStore, location: str) -> bool:
    root = store.location("x").rpartition("/")[0] + "/"
    return absolute(location).startswith(root)


def absolute(location: str) -> str:
    if location.startswith("s3://"):
        return location
    return os.path.abspath(os.path.expanduser(location))


def default_store_root(location: str, run_id: str) -> str:
    """Where a resumed run keeps checkpointing: the root the checkpoint was saved under
    (``<root>/<run_id>/<n>.ckpt``), else the checkpoint's own directory."""
    if location.startswith("s3://"):
        parent = posixpath.dirname(location)
        return posixpath.dirname(parent) if posixpath.basename(parent) == run_id else parent
    parent = os.path.dirname(absolute(location))
    return os.path.dirname(parent) if os.path.basename(parent) == run_id else parent
