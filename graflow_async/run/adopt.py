"""Adopting durable runs whose driver died (SPEC 10): what every worker and every `serve`
process of a Redis namespace does unless started with ``--no-adopt``.

Every `EVERY` seconds the adopter asks Redis for the durable runs whose lease should
have lapsed (`Owners.orphans`); for each it reads the run's header and, when the run's
workflow (``module:attr``) is one this process has already imported, carries the run on
(`durable.carry_on`). Of several adopters of one run, exactly one wins (the owner
record's script); the others leave it. A workflow is never imported because Redis
names it: a run whose workflow this process does not have is left for one that has it.
When the adopter stops (its process shuts down), the runs it carries are let go at
once, for another process to adopt.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.define.graph import Workflow
from graflow_async.exceptions import GraflowError, TransportError
from graflow_async.logs import LibraryLog
from graflow_async.transports.redis import RedisStreamsTransport

log = LibraryLog()
EVERY = 0.5  # seconds between looks for orphaned runs
PAGE = 50  # orphans looked at per look (the next look goes on from there)
MAX_PASSED = 10_000  # runs remembered as not adoptable here, at most


def imported_workflow(ref: str) -> Workflow | None:
    """The workflow ``module:attr`` names, when its module is already imported here."""
    module_name, sep, attr = ref.partition(":")
    module = sys.modules.get(module_name) if sep else None
    obj: Any = module
    for part in attr.split(".") if module is not None else ():
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, Workflow) else None


class Adopter:
    """Adopts the orphaned durable runs of `transport`'s namespace (see the module)."""

    def __init__(self, transport: RedisStreamsTransport, *, owner_lease: float = 10.0, every: float = EVERY) -> None:
        self.transport = transport
        self.owner_lease = owner_lease
        self.every = every
        self.carrying: dict[str, asyncio.Task[Any]] = {}
        self.passed: set[str] = set()  # runs whose workflow this process does not have
        self._offset = 0  # where the next look starts in the list of orphans (runs left to others go by)

    async def run(self) -> None:
        try:
            while True:
                await current_clock().sleep(self.every)
                try:
                    await self.look()
                except TransportError as exc:
                    log.warning("could not look for durable runs to adopt", error=str(exc)[:200])
        finally:
            for task in self.carrying.values():
                task.cancel()  # each lets its run go (carry_on's let_go_on_cancel)
            if self.carrying:
                await asyncio.gather(*self.carrying.values(), return_exceptions=True)

    async def look(self) -> None:
        """One look: adopt what can be adopted now."""
        from graflow_async.run.redis_home import RedisHome

        found = await self.transport.owners.orphans(PAGE, self._offset)
        self._offset = self._offset + PAGE if len(found) == PAGE else 0
        if len(self.passed) > MAX_PASSED:  # looked at again, in case this process can adopt them by now
            self.passed.clear()
        for run_id in found:
            if run_id in self.carrying or run_id in self.passed:
                continue
            try:
                header = await RedisHome(self.transport, run_id).header()
            except GraflowError as exc:
                log.warning("a durable run cannot be adopted", run_id=run_id, error=str(exc)[:200])
                self.passed.add(run_id)
                continue
            if header is None:  # its keys are gone
                await self.transport.owners.forget(run_id)
                continue
            ref = header.get("workflow")
            workflow = imported_workflow(ref) if isinstance(ref, str) else None
            if workflow is None:
                self.passed.add(run_id)
                continue
            task = asyncio.create_task(self._carry(run_id, workflow), name=f"adopted {run_id}")
            self.carrying[run_id] = task

    async def _carry(self, run_id: str, workflow: Workflow) -> None:
        from graflow_async.run.durable import carry_on

        try:
            result = await carry_on(
                run_id,
                workflow=workflow,
                transport=self.transport,
                owner_lease=self.owner_lease,
                let_go_on_cancel=True,
                adopting=True,
            )
            if result is not None:
                log.info("an adopted durable run ended", run_id=run_id, status=result.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the run's own failure (kept as its outcome), or one it cannot be adopted for
            log.info("an adopted durable run failed", run_id=run_id, error=repr(exc)[:200])
            self.passed.add(run_id)  # not looked at again: an ended run has left the list anyway
        finally:
            self.carrying.pop(run_id, None)
