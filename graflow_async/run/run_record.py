"""The run record (SPEC 8) of a durable run, kept by whichever process drives it (SPEC 10):
`GET /api/runs` and the UI list every durable run, wherever it was started.

The record goes to the run's feedback store (its run records live in the same backend:
files under ``.graflow/runs``, or Redis). While the run runs its driver names itself as
the record's owner and renews the record's lease every third of `owner_lease`; a driver
that dies stops renewing, and the record then reads as `running` with no owner while
it waits to be adopted (on Redis), or `interrupted` until `recover` (in-process). The
process that takes the run over names itself. A record that cannot be written is
logged, never a failure of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.feedback.defaults import store_for
from graflow_async.feedback.file import default_runs_directory, file_key
from graflow_async.feedback.hitl import DEFAULT_FEEDBACK_DIRECTORY, open_feedback_store
from graflow_async.logs import library_logger
from graflow_async.records.base import CANCELLED, COMPLETED, FAILED, RUNNING, SUSPENDED, bounded_results
from graflow_async.records.contract import RunRecords
from graflow_async.records.file import FileRunRecords
from graflow_async.records.owners import host_identity
from graflow_async.result import WorkflowResult
from graflow_async.run.options import RunOptions


class DurableRecord:
    """The record of one durable run, as its current driver `holder` keeps it."""

    def __init__(self, store: RunRecords, options: RunOptions, key: str, name: str, holder: str, *, adoptable: bool):
        self.store = store
        self.lease = options.owner_lease
        self.doc: dict[str, Any] = {
            "run_id": options.run_id,
            "workflow": key[:200],
            "workflow_name": name[:200],
            "status": RUNNING,
            "started_at": time.time(),
            "owner": {"instance": holder, "host": host_identity(), "pid": os.getpid()},
            "durable": True,
            "adoptable": adoptable,
        }
        self._owned: RunRecords | None = None

    @classmethod
    def of(cls, options: RunOptions, key: str, name: str, holder: str, *, adoptable: bool) -> DurableRecord | None:
        """The record of the run `options` describe, in its feedback store (None when that
        store keeps no run records)."""
        spec = options.feedback_store
        if spec is None and options.transport is not None:
            spec = store_for(options.transport)
        if spec is None:  # the embedded default (.graflow/runs): as durable as the run's own journal
            directory = default_runs_directory(Path(DEFAULT_FEEDBACK_DIRECTORY))
            return cls(FileRunRecords(directory, file_key, sync=False), options, key, name, holder, adoptable=adoptable)
        store = open_feedback_store(spec)
        if not isinstance(store, RunRecords):
            return None
        record = cls(store, options, key, name, holder, adoptable=adoptable)
        if store is not spec:
            record._owned = store  # opened here: closed here
        return record

    async def _save(self) -> None:
        try:
            await self.store.save_run({**self.doc, "updated_at": time.time()})
        except Exception as exc:
            library_logger().warning(
                "could not keep a durable run's record", run_id=self.doc["run_id"], error=repr(exc)[:200]
            )

    @contextlib.asynccontextmanager
    async def kept(self, taken_over: bool) -> AsyncIterator[None]:
        """Running while the block runs: the lease renewed every third of `owner_lease`
        (from a task of its own: the run does not wait for the record)."""
        renewing = asyncio.create_task(self._renew(taken_over))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _previous(self) -> dict[str, Any] | None:
        try:
            return await self.store.get_run(self.doc["run_id"])
        except Exception:
            return None

    async def _renew(self, taken_over: bool) -> None:
        previous = await self._previous() if taken_over else None
        if previous is not None:  # the run started when it first did
            self.doc["started_at"] = previous["started_at"]
        while True:
            self.doc["lease_until"] = time.time() + self.lease
            await self._save()
            await current_clock().sleep(self.lease / 3)

    async def ended(self, result: WorkflowResult | None, error: BaseException | None = None) -> None:
        """The run ended with `result` (completed or suspended), `error`, or (neither)
        cancelled."""
        doc = self.doc
        doc.update(ended_at=time.time(), lease_until=None)
        if result is not None:
            doc.update(status=COMPLETED if result.status == "completed" else SUSPENDED)
            doc.update(results=bounded_results(result.results), checkpoint=result.checkpoint)
        elif error is not None:
            doc.update(status=FAILED, error=f"{type(error).__name__}: {error}")
        else:
            doc.update(status=CANCELLED)
        await self._save()

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned.aclose()
