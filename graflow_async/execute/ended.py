"""Whether the runs an executor's tasks come from have ended (their tasks are then
skipped: settled, never run), as the transport judged them at most `ALIVE_FOR` seconds
ago. A verdict is not kept for good: a run whose owner record Redis lost re-creates it.
An incarnation older than one judged running has ended (its run was resumed or taken
over)."""

from __future__ import annotations

from typing import Any

from graflow_async.clock import current_clock
from graflow_async.transports.base import Incarnation, Transport
from graflow_async.wire.messages import TaskMessage

ALIVE_FOR = 0.2  # seconds a run seen alive is believed alive (revocation is at most this late)
MOST = 10_000  # verdicts kept


def incarnation(msg: TaskMessage) -> Incarnation:
    return Incarnation(msg.run_id, msg.epoch, msg.reply_to)


class EndedRuns:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._judged: dict[Incarnation, tuple[bool, float]] = {}  # incarnation -> (ended, when it was judged)
        self._latest: dict[str, int] = {}  # run id -> the newest epoch judged running: older ones have ended

    async def among(self, runs: set[Incarnation]) -> set[Incarnation]:
        """Those of `runs` that have ended."""
        now = current_clock().time()
        judged, latest = self._judged, self._latest
        stale = {r for r in runs if r not in judged or judged[r][1] + ALIVE_FOR <= now}
        if stale:
            found = await self.transport.ended(stale)
            for r in stale:
                judged.pop(r, None)
                judged[r] = (r in found, now)
                if r not in found and r.epoch > latest.get(r.run_id, 0):
                    latest.pop(r.run_id, None)
                    latest[r.run_id] = r.epoch
            _bound(judged, MOST)
            _bound(latest, MOST)
        return {r for r in runs if judged[r][0] or r.epoch < latest.get(r.run_id, 0)}


def _bound(seen: dict[Any, Any], most: int) -> None:
    """Forget the oldest entries of `seen` beyond `most`."""
    while len(seen) > most:
        del seen[next(iter(seen))]
