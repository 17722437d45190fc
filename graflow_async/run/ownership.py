"""A driver's hold on its run on each transport that has incarnations (Redis): the
lease renewed while the run runs, and the owner record made again where Redis lost it.
A driver that finds another incarnation holding its run stops (`TransportError`)."""

from __future__ import annotations

from typing import Any

from graflow_async.clock import current_clock
from graflow_async.exceptions import TransportError
from graflow_async.run.routes import Route, distinct


class TakenOver(TransportError):
    """Another incarnation holds the run now: this driver stops, changing nothing more."""


def _taken_over(run_id: str) -> TransportError:
    return TakenOver(f"run {run_id} was started again elsewhere (a newer incarnation took it over): this driver stops")


async def hold(routes: list[Route], lease: float, log: Any) -> None:
    """Renew the lease of each route every third of `lease` while the run runs; raise
    once another incarnation has taken the run over (the run then fails, changing
    nothing more). An outage is tried again at the next turn."""
    while True:
        await current_clock().sleep(lease / 3)
        for route in routes:
            try:
                ours = await route.transport.renew_run(route.run_id, route.epoch, lease)
            except TransportError as exc:
                log.warning("could not renew the run's lease", error=str(exc)[:200])
                continue
            if not ours:
                raise _taken_over(route.run_id)


async def reclaim(routes: list[Route], queue: str, lease: float) -> None:
    """The reply stream `queue` was lost (Redis restarted without persistence): make
    this driver's owner record again before its tasks are sent again."""
    for route in distinct(routes):
        if route.epoch and route.reply_to == queue:
            if not await route.transport.renew_run(route.run_id, route.epoch, lease):
                raise _taken_over(route.run_id)
