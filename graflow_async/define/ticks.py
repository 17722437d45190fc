"""A schedule's ticks, and which of them to start: pure functions of the schedule, the
last tick started and the time now (no clock, no I/O), so every rule is tested with
plain values and the scheduler loop (`run.scheduler`) only carries the answer out.

Tick times are aware UTC datetimes.

- cron: the times the expression names in the schedule's time zone (cronsim). Across a
  daylight-saving change a time of day that does not exist (02:30 on the spring-forward
  night) runs at the first minute that does (03:00), and one that happens twice (02:30 on
  the fall-back night) runs once, the first time, as Debian's cron does. Expressions
  stepping through every hour (``*/15 * * * *``) follow real time: none is skipped or
  doubled.
- every: whole multiples of `every` counted from the Unix epoch (1970-01-01T00:00:00Z),
  so that every process works out the same ticks without asking another.

A tick's run id is ``"<name>@<tick>"`` with the tick written ``2026-12-06T09:00:00Z``
(ISO 8601, UTC, whole seconds and ``Z``). A schedule whose `every` is not a whole number
of seconds writes every tick with milliseconds, ``2026-12-06T09:00:00.300Z``, so that the
run ids of one schedule all have one length and sort by time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from graflow_async.define.schedules import Schedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CATCH_UP = 1000  # missed ticks started at most at once by catch_up (the latest ones)
_MS = timedelta(milliseconds=1)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Due:
    """What to do now: start the runs of `start` (oldest first), then look again at `next`."""

    start: tuple[datetime, ...]
    next: datetime | None  # None: the expression has no tick left (cronsim looks 50 years ahead)


def due(schedule: Schedule, last: datetime, now: datetime, *, limit: int = MAX_CATCH_UP) -> Due:
    """The ticks to start at `now`, given that every tick up to `last` has been dealt with:
    those in (last, now], every one with `catch_up` (the latest `limit` of them), else only
    the latest; and the first tick after `now`."""
    last, now = _utc(last), _utc(now)
    if schedule.catch_up:
        missed = list(reversed(list(_before(schedule, now, last, limit))))
    else:
        missed = list(_before(schedule, now, last, 1))
    return Due(tuple(missed), next_tick(schedule, now))


def next_tick(schedule: Schedule, after: datetime) -> datetime | None:
    """The first tick strictly after `after`."""
    after = _utc(after)
    if schedule.every_ms is not None:
        step = schedule.every_ms
        return EPOCH + _MS * ((_ms(after) // step + 1) * step)
    assert schedule.fields is not None
    try:
        return next(_cron(schedule, after, reverse=False))
    except StopIteration:
        return None


def latest_tick(schedule: Schedule, at: datetime) -> datetime | None:
    """The last tick at or before `at` (None: none in the 50 years before)."""
    return next(_before(schedule, _utc(at), EPOCH, 1), None)


def ticks_between(schedule: Schedule, since: datetime, until: datetime) -> list[datetime]:
    """Every tick in (since, until], oldest first (as many as there are: for tests and tools)."""
    found = []
    tick = next_tick(schedule, since)
    while tick is not None and tick <= _utc(until):
        found.append(tick)
        tick = next_tick(schedule, tick)
    return found


def tick_text(tick: datetime, *, millis: bool = False) -> str:
    """``2026-12-06T09:00:00Z``; with `millis` (or inside a second) ``2026-12-06T09:00:00.300Z``."""
    tick = _utc(tick)
    text = tick.strftime("%Y-%m-%dT%H:%M:%S")
    if millis or tick.microsecond:
        text += f".{tick.microsecond // 1000:03d}"
    return text + "Z"


def schedule_tick_text(schedule: Schedule, tick: datetime) -> str:
    """`tick` as `schedule` writes it in its run ids (milliseconds for a sub-second `every`)."""
    return tick_text(tick, millis=schedule.every_ms is not None and schedule.every_ms % 1000 != 0)


def parse_tick(text: str) -> datetime:
    """A tick back from `tick_text`; ValueError for anything else."""
    if not isinstance(text, str) or not text.endswith("Z") or len(text) not in (20, 24):
        raise ValueError(f"not a tick time: {text!r}")
    layout = "%Y-%m-%dT%H:%M:%S.%f" if len(text) == 24 else "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(text[:-1], layout).replace(tzinfo=UTC)


def run_id_for(schedule: Schedule, tick: datetime) -> str:
    """The run id of `schedule`'s run at `tick`: ``"<name>@<tick>"``."""
    return f"{schedule.name}@{schedule_tick_text(schedule, tick)}"


def tick_ms(tick: datetime) -> int:
    """Milliseconds since the Unix epoch (how the last tick is kept)."""
    return _ms(_utc(tick))


def from_ms(ms: int) -> datetime:
    return EPOCH + _MS * ms


def _before(schedule: Schedule, at: datetime, since: datetime, limit: int) -> Iterator[datetime]:
    """Up to `limit` ticks in (since, at], newest first."""
    if schedule.every_ms is not None:
        step = schedule.every_ms
        k = _ms(at) // step
        first = _ms(since) // step + 1
        for n in range(k, max(first, k - limit + 1) - 1, -1):
            yield EPOCH + _MS * (n * step)
        return
    # reverse iteration yields ticks strictly before its start (at whole seconds, as a
    # five-field expression's ticks are): start a second past `at`'s whole second
    start = at.replace(microsecond=0) + _SECOND
    for count, tick in enumerate(_cron(schedule, start, reverse=True)):
        if count >= limit or tick <= since:
            return
        yield tick


def _cron(schedule: Schedule, start: datetime, *, reverse: bool) -> Iterator[datetime]:
    assert schedule.fields is not None
    for tick in CronSim(schedule.fields, start.astimezone(schedule.zone), reverse=reverse):
        yield tick.astimezone(UTC)


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a tick time must be aware (UTC), got {moment!r}")
    return moment.astimezone(UTC)
