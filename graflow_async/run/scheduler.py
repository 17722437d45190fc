"""The scheduler (SPEC 11): starts one durable run per tick of each schedule.

Which ticks to start is decided by `define.ticks.due` (pure); this loop only carries it
out: read the schedule's last tick (`schedule_marks`), start what is due, remember the
tick, sleep until the next one. Each tick's run is a durable run whose run id is
``"<name>@<tick>"``, an idempotency key (SPEC 10): any number of processes running the
same schedule on one Redis (or one checkpoint directory) start each tick once; the
others find the run there and move on (on Redis, workers and `serve` adopt a run whose
driver died; in-process, `recover` carries it on).

Runs are children of the scheduler (`Supervisor`), started as tasks: the loop never
waits for a run, and a run that fails is logged, never a failure of the scheduler.
Stopping the scheduler cancels its runs: on Redis they are let go, for another process
to adopt; in-process they end cancelled.

Every run's channel starts with ``scheduled_at``, the tick as written in its run id
(``2026-12-06T09:00:00Z``), unless the schedule's `initial_channel` sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from graflow_async.actors import Supervisor
from graflow_async.clock import current_clock
from graflow_async.define.schedules import Schedule
from graflow_async.define.ticks import due, run_id_for, schedule_tick_text, tick_text
from graflow_async.logs import LibraryLog
from graflow_async.run.durable import start_durable
from graflow_async.run.options import RunOptions
from graflow_async.run.schedule_marks import FileMarks, Marks, RedisMarks
from graflow_async.transports.base import Transport
from graflow_async.wire.codec import check_value

log = LibraryLog()
MAX_NAP = 60.0  # seconds slept at most before the wall clock is read again (it may jump)
MIN_NAP = 0.001  # a wake-up a hair before the tick sleeps this long, not zero
RETRY_MARKS = 1.0  # seconds before the last tick is asked for again when its store failed


def now_utc() -> datetime:
    return datetime.fromtimestamp(current_clock().wall(), UTC)


class Scheduler:
    """Runs `schedules` while `run` runs (or inside `running`). Runs go to `transport`
    (Redis: workers run their tasks) or in-process, journaled under `checkpoint_store`;
    their records to `feedback_store` (default: the transport's, else ``.graflow``).
    The last tick of each schedule is kept by `marks` (default: on the transport's Redis,
    else files under ``.graflow/schedules``)."""

    def __init__(
        self,
        schedules: Iterable[Schedule],
        *,
        transport: Transport | None = None,
        checkpoint_store: Any = None,
        feedback_store: Any = None,
        marks: Marks | None = None,
        owner_lease: float = 10.0,
    ) -> None:
        self.schedules: dict[str, Schedule] = {}
        for schedule in schedules:
            if not isinstance(schedule, Schedule):
                raise TypeError(f"expected a Schedule, got {type(schedule).__name__}")
            if schedule.name in self.schedules:
                raise ValueError(f"two schedules are named {schedule.name!r}")
            for key, value in schedule.initial_channel.items():
                check_value(key, value)  # TypeError naming the key, now rather than at the first tick
            self.schedules[schedule.name] = schedule
        on_redis = transport is not None and transport.keeps_journals
        self.transport = transport
        self.checkpoint_store = checkpoint_store
        self.feedback_store = feedback_store
        self.owner_lease = owner_lease
        self.marks = marks if marks is not None else (RedisMarks(transport) if on_redis else FileMarks())
        self.let_go_on_cancel = on_redis  # another process adopts them

    async def run(self) -> None:
        """Run every schedule until cancelled; cancelling stops the runs it started too."""
        async with Supervisor("graflow-async schedules") as sup:
            for schedule in self.schedules.values():
                sup.spawn(self._ticking(schedule, sup), name=f"schedule {schedule.name}")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """`run` while the block runs."""
        task = asyncio.create_task(self.run(), name="graflow-async scheduler")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _ticking(self, schedule: Schedule, sup: Supervisor) -> None:
        clock = current_clock()
        since = await self._since(schedule)
        log.info("schedule running", schedule=schedule.name, when=schedule.when, since=tick_text(since))
        while True:
            now = now_utc()
            decision = due(schedule, since, now)
            for tick in decision.start:
                await self._remember(schedule, tick)
                sup.spawn(self.start(schedule, tick), name=f"scheduled {run_id_for(schedule, tick)}")
                since = tick
            if decision.next is None:
                log.warning("schedule has no tick left", schedule=schedule.name, when=schedule.when)
                return
            wait = (decision.next - now_utc()).total_seconds()
            await clock.sleep(min(max(wait, MIN_NAP), MAX_NAP))

    async def _since(self, schedule: Schedule) -> datetime:
        """Where the schedule's missed ticks begin: its last tick started, or now."""
        while True:
            try:
                last = await self.marks.last(schedule.name)
                return last if last is not None else now_utc()
            except Exception as exc:  # its store is unreachable: ticks wait for it
                log.warning("cannot read a schedule's last tick", schedule=schedule.name, error=repr(exc)[:200])
                await current_clock().sleep(RETRY_MARKS)

    async def _remember(self, schedule: Schedule, tick: datetime) -> None:
        try:
            await self.marks.advance(schedule.name, tick)
        except Exception as exc:  # the run still starts: its run id keeps it once
            log.warning("cannot keep a schedule's last tick", schedule=schedule.name, error=repr(exc)[:200])

    async def start(self, schedule: Schedule, tick: datetime) -> None:
        """Start (or attach to) the run of `schedule` at `tick` and wait for its outcome,
        which is logged; a failure is logged, never raised."""
        run_id = run_id_for(schedule, tick)
        try:
            options = RunOptions(
                run_id=run_id,
                transport=self.transport,
                checkpoint_store=self.checkpoint_store,
                feedback_store=self.feedback_store,
                initial_channel={"scheduled_at": schedule_tick_text(schedule, tick), **schedule.initial_channel},
                owner_lease=self.owner_lease,
                durable=True,
            )
            log.info("scheduled run starting", schedule=schedule.name, run_id=run_id)
            result = await start_durable(schedule.workflow, options, let_go_on_cancel=self.let_go_on_cancel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("scheduled run failed", schedule=schedule.name, run_id=run_id, error=repr(exc)[:300])
            return
        if result is None:  # another scheduler started this tick's run: it is theirs (or an adopter's)
            log.info("scheduled run started elsewhere", schedule=schedule.name, run_id=run_id)
            return
        log.info("scheduled run ended", schedule=schedule.name, run_id=run_id, status=result.status)
