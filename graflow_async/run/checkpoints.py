"""`CheckpointManager`: saving a run's checkpoints to a store and reading them back."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from graflow_async.checkpoints.format import encode_checkpoint_parts
from graflow_async.checkpoints.locations import absolute, default_store_root, load_checkpoint
from graflow_async.checkpoints.runlock import mark_completed
from graflow_async.checkpoints.stores import CheckpointStore, open_store, store_for_location
from graflow_async.exceptions import CheckpointError
from graflow_async.logs import LibraryLog

if TYPE_CHECKING:
    from graflow_async.define.graph import Workflow
    from graflow_async.result import WorkflowResult

log = LibraryLog()


class CheckpointManager:
    """Writes and reads checkpoints for runs, in `store` (a directory, an
    ``s3://bucket/prefix`` URI or a `CheckpointStore`; default ``.graflow/checkpoints``).

    The store is opened on first use, so a run that never checkpoints touches nothing.
    """

    def __init__(self, store: str | os.PathLike[str] | CheckpointStore | None = None, **options: Any):
        self._spec = store
        self._options = options
        self._store: CheckpointStore | None = None
        self._owned = not isinstance(store, CheckpointStore)
        self._written: set[str] = set()  # locations of the checkpoints saved

    @property
    def store(self) -> CheckpointStore:
        if self._store is None:
            self._store = open_store(self._spec, **self._options)
        return self._store

    @property
    def saved(self) -> bool:
        """Whether this run saved a checkpoint."""
        return bool(self._written)

    async def mark_completed(self, run_id: str) -> None:
        """Record next to each checkpoint the run saved (in the root `resume` looks in)
        that the run completed; a failure is logged, the run stays completed."""
        store = self.store
        own_root = store.location("x").rpartition("/")[0]
        for root in sorted({default_store_root(location, run_id) for location in self._written}):
            try:
                if root == own_root:
                    await mark_completed(store, run_id)
                    continue
                async with store_for_location(root + "/x", **self._location_options()) as other:
                    await mark_completed(other, run_id)
            except CheckpointError as exc:
                log.warning("could not record that the run completed", run_id=run_id, error=str(exc)[:200])

    async def next_sequence(self, run_id: str, at_least: int) -> int:
        """The first checkpoint number above `at_least` and above every checkpoint the
        run already has in the store (a run resumed from an older one keeps the newer)."""
        highest = at_least
        for location in await self.store.list(f"{run_id}/"):
            stem = location.rpartition("/")[2].removesuffix(".ckpt")
            if stem.isdigit():
                highest = max(highest, int(stem))
        return highest + 1

    async def save(self, doc: dict[str, Any], *, name: str, path: str | None = None) -> str:
        """Encode `doc` and write it at `path` (a local path or ``s3://`` URI), or at
        `name` under the store's root; return the location."""
        store = self.store
        data = encode_checkpoint_parts(doc, key=store.signing_key)
        if path is None:
            location = await store.write(store.location(name), data)
            self._written.add(location)
            return location
        target = store_for_location(str(path), **self._location_options())
        try:
            location = await target.write(absolute(str(path)), data)
            self._written.add(location)
            return location
        finally:
            await target.aclose()

    async def load(self, location: str) -> dict[str, Any]:
        """The checkpoint document at `location`, verified with the store's signing key
        wherever it lies; CheckpointError otherwise."""
        return await load_checkpoint(str(location), store=self.store, **self._options)

    def _location_options(self) -> dict[str, Any]:
        options = dict(self._options)
        if self._store is not None and "signing_key" not in options and self._store.signing_key:
            options["signing_key"] = self._store.signing_key
        return options

    async def aclose(self) -> None:
        if self._store is not None and self._owned:
            await self._store.aclose()
        self._store = None

    @staticmethod
    async def resume_from_checkpoint(
        location: str, *, workflow: Workflow | None = None, **run_options: Any
    ) -> WorkflowResult:
        """Same as `graflow_async.run.resume`."""
        from graflow_async.run.resume import resume

        return await resume(location, workflow=workflow, **run_options)
