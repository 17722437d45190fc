"""`CheckpointManager`: saving a run's checkpoints to a store and resuming from them."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from graflow_async.checkpoints.format import decode_checkpoint, encode_checkpoint_parts
from graflow_async.checkpoints.runlock import completed_at, mark_completed, run_lease
from graflow_async.checkpoints.stores import CheckpointStore, open_store, store_for_location
from graflow_async.exceptions import CheckpointError
from graflow_async.loading import load_object
from graflow_async.logs import LibraryLog
from graflow_async.plan.snapshot import check_document, check_same_graph

if TYPE_CHECKING:
    from graflow_async.define.graph import Workflow
    from graflow_async.runner import WorkflowResult

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
        for root in sorted({_default_store_root(location, run_id) for location in self._written}):
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
            location = await target.write(_absolute(str(path)), data)
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
        """Same as `graflow_async.resume`."""
        return await resume(location, workflow=workflow, **run_options)


async def load_checkpoint(
    location: str, *, store: CheckpointStore | None = None, **store_options: Any
) -> dict[str, Any]:
    """Read, verify and decode the run checkpoint at `location`, through `store` when the
    location lies in it (its endpoint and credentials apply), else a store made for it.
    `store`'s signing key applies wherever the location lies: a store that signs never
    loads an unsigned checkpoint, or one signed with another key, from elsewhere."""
    if store is not None and _holds(store, location):
        data = await store.read(_absolute(location))
        doc = decode_checkpoint(data, key=store.signing_key, source=location)
        return check_document(doc, location)
    own = store_for_location(location, **store_options)
    try:
        data = await own.read(_absolute(location))
    finally:
        await own.aclose()
    key = store.signing_key if store is not None else own.signing_key
    return check_document(decode_checkpoint(data, key=key, source=location), location)


def _holds(store: CheckpointStore, location: str) -> bool:
    root = store.location("x").rpartition("/")[0] + "/"
    return _absolute(location).startswith(root)


def _absolute(location: str) -> str:
    if location.startswith("s3://"):
        return location
    return os.path.abspath(os.path.expanduser(location))


def _default_store_root(location: str, run_id: str) -> str:
    """Where a resumed run keeps checkpointing: the root the checkpoint was saved under
    (``<root>/<run_id>/<n>.ckpt``), else the checkpoint's own directory."""
    if location.startswith("s3://"):
        parent = posixpath.dirname(location)
        return posixpath.dirname(parent) if posixpath.basename(parent) == run_id else parent
    parent = os.path.dirname(_absolute(location))
    return os.path.dirname(parent) if os.path.basename(parent) == run_id else parent


def _import_workflow(ref: str | None, location: str) -> Workflow:
    from graflow_async.define.graph import Workflow

    hint = "pass resume(..., workflow=...)"
    if not ref:
        raise CheckpointError(
            f"checkpoint {location!r} does not record an importable workflow "
            f"(it was defined in a script or a function): {hint}"
        )
    try:
        obj = load_object(ref)
    except LookupError as exc:
        raise CheckpointError(f"cannot import workflow {ref} for {location!r}: {exc}; {hint}") from exc
    if not isinstance(obj, Workflow):
        raise CheckpointError(f"{ref} is {type(obj).__name__}, not a workflow; {hint}")
    return obj


async def resume(
    location: str, *, workflow: Workflow | None = None, force: bool = False, **run_options: Any
) -> WorkflowResult:
    """Continue the run saved at `location` and return its `WorkflowResult`.

    Completed tasks do not run again (their results and the channel are restored); the
    task that saved the checkpoint and every task not yet completed run, the former
    seeing ``context.resumed_metadata``. `workflow` may be omitted when the checkpoint
    records an importable ``module:attr``. `run_options` are those of `run`; the run id
    stays the checkpoint's unless given.

    Safe to call twice: `CheckpointError` when the run has completed since (``force=True``
    runs it again), and when another process is resuming it through the same store
    ("already running": the resumed run holds a lease next to its checkpoints).
    """
    from graflow_async.runner import start_run

    location = str(location)
    store = run_options.get("checkpoint_store")
    given = store if isinstance(store, CheckpointStore) else None
    doc = await load_checkpoint(location, store=given)
    wf = workflow if workflow is not None else _import_workflow(doc.get("workflow_ref"), location)
    graph = wf.compile()
    check_same_graph(doc, graph, location)
    run_id = run_options.setdefault("run_id", doc["run_id"])
    run_options.setdefault("checkpoint_store", _default_store_root(location, doc["run_id"]))
    async with _guard_store(location, doc["run_id"], given) as guard:
        if not force and await completed_at(guard, run_id) is not None:
            raise CheckpointError(
                f"run {run_id} has completed since checkpoint {location!r} was saved; "
                "resume(..., force=True) runs it again"
            )
        async with run_lease(guard, run_id):
            result = await start_run(wf, snapshot=doc, **run_options)
            if result.status == "completed":
                await mark_completed(guard, run_id)
            return result


@contextlib.asynccontextmanager
async def _guard_store(location: str, run_id: str, given: CheckpointStore | None) -> AsyncIterator[CheckpointStore]:
    """The store holding the run's checkpoints, where its lease and completion live: the
    given store when the checkpoint lies in it, else one opened on the checkpoint's root."""
    if given is not None and _holds(given, location):
        yield given
        return
    async with open_store(_default_store_root(location, run_id)) as own:
        yield own
