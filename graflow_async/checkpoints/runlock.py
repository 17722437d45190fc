"""What makes `resume` safe to call twice, kept next to the run's checkpoints:

- ``<run_id>/completed``: written when a run that keeps checkpoints completes, so that
  resuming one of its checkpoints later raises `RunCompletedError` (unless ``force``) instead
  of running the work again (and charging the card twice);
- ``<run_id>/lease.<epoch>``: held by the process running a resumed run, renewed while
  it runs; a second resume of the same run through the same store raises
  `RunAlreadyRunningError` (a `CheckpointError`: "already running"). A lease its
  holder stopped renewing (a crashed process) lapses after `LEASE_SECONDS` and may
  then be taken over, by creating the next epoch's file: of two processes taking over
  at once, one wins. A holder that stalled past its lease and comes back finds a newer
  epoch when it renews, and stops (fencing). A lease claiming to last more than
  `MAX_CLAIM` seconds ahead is not believed.

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
MAX_CLAIM = 120.0  # seconds ahead a lease may claim to last; one claiming more has lapsed
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
    `RunAlreadyRunningError` when another process holds it. Yields the holder's id.

    A holder that finds its lease taken over (it stalled past it, and another process
    took the run) cancels the block and raises `RunAlreadyRunningError`: it does nothing
    more for the run."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    epoch = await _acquire(store, run_id, holder, seconds, current_clock())
    lost = asyncio.Event()
    try:
        async with held(store, run_id, epoch, holder, seconds) as lost:
            yield holder
    finally:
        if not lost.is_set():
            await _release(store, _location(store, run_id, epoch), holder)


@contextlib.asynccontextmanager
async def held(
    store: CheckpointStore, run_id: str, epoch: int, holder: str, seconds: float = LEASE_SECONDS
) -> AsyncIterator[asyncio.Event]:
    """Renew lease `epoch` every third of `seconds` while the block runs (the lease is
    taken and given up by the caller). Yields an event set if the lease is lost: a newer
    epoch holds the run, so the block is cancelled and `RunAlreadyRunningError` raised."""
    clock = current_clock()
    done, lost = asyncio.Event(), asyncio.Event()
    block = asyncio.current_task()
    renewing = asyncio.create_task(_renew(store, run_id, epoch, holder, seconds, clock, done, lost, block))
    try:
        yield lost
    except asyncio.CancelledError:
        if lost.is_set():  # our own cancellation: it ends here, as this error
            if block is not None:
                block.uncancel()
            raise RunAlreadyRunningError(
                run_id, f"run {run_id} was taken over by another process: this one stops"
            ) from None
        raise
    finally:
        done.set()
        try:  # a renewal being written lands before the release, never after it (which would re-create the lease)
            await renewing
        except asyncio.CancelledError:
            if not (lost.is_set() and block is not None and block.cancelling()):
                raise
            block.uncancel()  # the lease was lost while the block was failing of its own (fenced): that error goes on
        finally:
            renewing.cancel()


def _location(store: CheckpointStore, run_id: str, epoch: int) -> str:
    return store.location(_name(run_id, f"lease.{epoch:010d}"))


async def _current(store: CheckpointStore, run_id: str) -> tuple[int, dict[str, Any] | None]:
    """The newest lease's epoch (0: none) and document (None: unreadable, or released)."""
    found = []
    for location in await store.list(_name(run_id, "lease.")):
        suffix = location.rpartition("lease.")[2]
        if suffix.isdigit() and len(suffix) <= 10:
            found.append((int(suffix), location))
    if not found:
        return 0, None
    epoch, location = max(found)
    try:
        return epoch, _parse(await store.read(location))
    except CheckpointError:  # released in between
        return epoch, None


def _live(doc: dict[str, Any] | None, now: float) -> float | None:
    """When a lease document expires, if it is live: a lease claiming more than
    `MAX_CLAIM` seconds ahead is not believed (it would block the run for that long)."""
    expires = doc.get("expires") if doc else None
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    return float(expires) if now < expires <= now + MAX_CLAIM else None


async def _acquire(store: CheckpointStore, run_id: str, holder: str, seconds: float, clock: Clock) -> int:
    """Take the lease: the next epoch, created atomically (of two processes taking over a
    lapsed lease at once, one wins); its epoch."""
    epoch, current = await _current(store, run_id)
    expires = _live(current, clock.wall())
    if expires is not None:
        raise RunAlreadyRunningError(
            run_id,
            f"run {run_id} is already running (resumed by {str(current.get('holder') if current else '')[:200]}, "
            f"lease until {time.strftime('%H:%M:%S', time.localtime(expires))}); wait for it to end",
        )
    if current is not None:
        log.warning("taking over a lapsed run lease", run_id=run_id, epoch=epoch)
    if not await store.create(_location(store, run_id, epoch + 1), _lease(run_id, holder, clock.wall() + seconds)):
        raise RunAlreadyRunningError(
            run_id, f"run {run_id} is already running (another process took its lease just now)"
        )
    if epoch:
        with contextlib.suppress(CheckpointError):
            await store.delete(_location(store, run_id, epoch))  # the lapsed one
    return epoch + 1


async def _renew(
    store: CheckpointStore,
    run_id: str,
    epoch: int,
    holder: str,
    seconds: float,
    clock: Clock,
    done: asyncio.Event,
    lost: asyncio.Event,
    block: asyncio.Task[Any] | None,
) -> None:
    """Renew the lease every third of `seconds` until `done` is set; when a newer epoch
    holds the run, set `lost` and cancel the block (this holder is fenced out)."""
    while True:
        try:
            await within(clock, done.wait(), seconds / 3)
            return
        except TimeoutError:
            pass
        try:
            if not await renew(store, run_id, epoch, holder, seconds):
                lost.set()
                if block is not None:
                    block.cancel()
                return
        except CheckpointError as exc:  # keep running: the next renewal may get through
            log.warning("could not renew the run lease", run_id=run_id, error=str(exc)[:200])


# --- the lease as steps, for an owner that holds it its own way (a durable run's journal) ----------------
async def acquire(store: CheckpointStore, run_id: str, holder: str, seconds: float = LEASE_SECONDS) -> int:
    """Take the run's lease as `holder`: its epoch. `RunAlreadyRunningError` when it is live
    (or another process took it just now)."""
    return await _acquire(store, run_id, holder, seconds, current_clock())


async def renew(store: CheckpointStore, run_id: str, epoch: int, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Renew lease `epoch`; False (and nothing written) once a newer epoch holds the run."""
    newest, _ = await _current(store, run_id)
    if newest != epoch:
        log.warning("the run lease was taken over: stopping", run_id=run_id, epoch=epoch, newest=newest)
        return False
    await store.write(_location(store, run_id, epoch), _lease(run_id, holder, current_clock().wall() + seconds))
    return True


async def release(store: CheckpointStore, run_id: str, epoch: int, holder: str) -> None:
    """Give lease `epoch` up (when `holder` still holds it), keeping its file as a lapsed
    lease so that the next owner's epoch comes after it."""
    location = _location(store, run_id, epoch)
    try:
        current = _parse(await store.read(location))
        if current and current.get("holder") == holder:
            await store.write(location, _lease(run_id, holder, 0.0))
    except CheckpointError as exc:
        log.warning("could not release the run lease", location=location, error=str(exc)[:200])


def release_file(path: str, run_id: str, holder: str) -> None:
    """`release` of a lease kept as a local file by the holder that created it, while no
    newer epoch holds the run (its caller knows): its document rewritten in place, padded
    with spaces (JSON's whitespace), not read first and not renamed over. A reader that
    catches it half-written reads a lapsed lease, which it is being made; a file a newer
    owner removed is not made again."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, _lease(run_id, holder, 0.0).ljust(os.fstat(fd).st_size), 0)
    finally:
        os.close(fd)


async def newest_epoch(store: CheckpointStore, run_id: str) -> int:
    """The epoch of the run's newest lease (0: none was ever taken)."""
    return (await _current(store, run_id))[0]


def lease_location(store: CheckpointStore, run_id: str, epoch: int) -> str:
    """Where lease `epoch` of the run lives (its existence fences out older epochs)."""
    return _location(store, run_id, epoch)


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
