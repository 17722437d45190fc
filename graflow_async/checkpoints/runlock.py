"""What makes `resume` safe to call twice, kept next to the run's checkpoints:

- ``<run_id>/completed``: written when a run that keeps checkpoints completes, so that
  resuming one of its checkpoints later raises `RunCompletedError` (unless ``force``) instead
  of running the work again (and charging the card twice);
- ``<run_id>/lease``: held by the process running a resumed run, renewed while it runs;
  a second resume of the same run through the same store raises
  `RunAlreadyRunningError` (a `CheckpointError`: "already running"). A lease its
  holder stopped renewing (a crashed process) lapses after `LEASE_SECONDS` and may
  then be taken over.

Both are small JSON documents written through the store (`CheckpointStore.create` is
atomic: of two processes taking a lease at once, one wins). Times are epoch seconds of
`current_clock().wall()`, and renewals wait on `current_clock()`, so a test's clock runs
a lease's life in an instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from graflow_async.checkpoints.stores import CheckpointStore
from graflow_async.clock import Clock, current_clock, within
from graflow_async.exceptions import CheckpointError, RunAlreadyRunningError
from graflow_async.logs import LibraryLog

log = LibraryLog()
LEASE_SECONDS = 30.0
MAX_DOC_BYTES = 4096


def _name(run_id: str, what: str) -> str:
    return f"{run_id}/{what}"


async def completed_at(store: CheckpointStore, run_id: str) -> float | None:
    """When the run completed (epoch seconds), or None if it has not."""
    location = store.location(_name(run_id, "completed"))
    if location not in await store.list(_name(run_id, "completed")):
        return None
    doc = _parse(await store.read(location))
    value = doc.get("at") if doc else None
    return float(value) if isinstance(value, int | float) else 0.0


async def mark_completed(store: CheckpointStore, run_id: str) -> None:
    """Record that the run completed."""
    at = current_clock().wall()
    await store.write(store.location(_name(run_id, "completed")), _doc({"run_id": run_id, "at": at}))


@contextlib.asynccontextmanager
async def run_lease(store: CheckpointStore, run_id: str, *, seconds: float = LEASE_SECONDS) -> AsyncIterator[str]:
    """Hold the run's lease while the block runs (renewed every third of `seconds`);
    `RunAlreadyRunningError` when another process holds it. Yields the holder's id."""
    clock = current_clock()
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    location = store.location(_name(run_id, "lease"))
    await _acquire(store, location, run_id, holder, seconds, clock)
    done = asyncio.Event()
    renewing = asyncio.create_task(_renew(store, location, run_id, holder, seconds, clock, done))
    try:
        yield holder
    finally:
        done.set()
        try:  # a renewal being written lands before the release, never after it (which would re-create the lease)
            await renewing
        finally:
            renewing.cancel()
            await _release(store, location, holder)


async def _acquire(
    store: CheckpointStore, location: str, run_id: str, holder: str, seconds: float, clock: Clock
) -> None:
    for _ in range(2):  # the second time after removing a lapsed lease
        if await store.create(location, _lease(run_id, holder, clock.wall() + seconds)):
            return
        try:
            current = _parse(await store.read(location))
        except CheckpointError:  # released in between: try again
            continue
        expires = current.get("expires") if current else None
        if current is not None and isinstance(expires, int | float) and expires > clock.wall():
            raise RunAlreadyRunningError(
                run_id,
                f"run {run_id} is already running (resumed by {str(current.get('holder'))[:200]}, "
                f"lease until {time.strftime('%H:%M:%S', time.localtime(expires))}); wait for it to end",
            )
        log.warning("taking over a lapsed run lease", run_id=run_id)
        await store.delete(location)
    raise RunAlreadyRunningError(run_id, f"run {run_id} is already running (another process took its lease just now)")


async def _renew(
    store: CheckpointStore, location: str, run_id: str, holder: str, seconds: float, clock: Clock, done: asyncio.Event
) -> None:
    """Renew the lease every third of `seconds` until `done` is set."""
    while True:
        try:
            await within(clock, done.wait(), seconds / 3)
            return
        except TimeoutError:
            pass
        try:
            await store.write(location, _lease(run_id, holder, clock.wall() + seconds))
        except CheckpointError as exc:  # keep running: the next renewal may get through
            log.warning("could not renew the run lease", run_id=run_id, error=str(exc)[:200])


async def _release(store: CheckpointStore, location: str, holder: str) -> None:
    try:
        current = _parse(await store.read(location))
        if current and current.get("holder") == holder:
            await store.delete(location)
    except CheckpointError as exc:
        log.warning("could not release the run lease", location=location, error=str(exc)[:200])


def _lease(run_id: str, holder: str, expires: float) -> bytes:
    return _doc({"run_id": run_id, "holder": holder, "expires": expires})


def _doc(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def _parse(data: bytes) -> dict[str, Any] | None:
    """A lease or marker document; None for anything else (it is then treated as lapsed)."""
    if len(data) > MAX_DOC_BYTES:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
