"""``--schedule SPEC`` of ``worker`` and ``serve`` (SPEC 11).

    --schedule 'NAME=*/5 * * * *=MODULE:ATTR'     a cron schedule (five fields or @daily...)
    --schedule 'NAME=every:30=MODULE:ATTR'        every 30 seconds
    --schedule-timezone Europe/Berlin             the time zone of the cron schedules (UTC)
    --schedule-catch-up                           start every tick missed while no scheduler ran

A SPEC that cannot be read, or a bad cron expression, is a usage error naming the
schedule (argparse's: exit code 2), found before anything is imported or connected.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from graflow_async.define.schedules import Schedule, check_name, cron_fields, every_ms, zone


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """One ``--schedule`` as written, its name and timing checked."""

    name: str
    cron: str | None
    every: float | None
    target: str  # MODULE:ATTR

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


def schedule_spec(text: str) -> ScheduleSpec:
    """argparse's `type` for ``--schedule``: ArgumentTypeError naming the schedule."""
    name, sep, rest = text.partition("=")
    when, sep2, target = rest.rpartition("=")
    if not sep or not sep2 or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=CRON=MODULE:ATTR or NAME=every:SECONDS=MODULE:ATTR")
    try:
        check_name(name)
        module, colon, attr = target.partition(":")
        if not colon or not module or not attr:
            raise ValueError(f"schedule {name!r}: expected MODULE:ATTR after the last '=', got {target!r}")
        if when.startswith("every:"):
            seconds = when.removeprefix("every:")
            try:
                value = float(seconds)
            except ValueError:
                raise ValueError(f"schedule {name!r}: every:{seconds} is not a number of seconds") from None
            return ScheduleSpec(name, None, every_ms(name, value) / 1000, target)
        cron_fields(name, when)
        return ScheduleSpec(name, when, None, target)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_schedule_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--schedule",
        dest="schedules",
        action="append",
        default=[],
        type=schedule_spec,
        metavar="SPEC",
        help="run a schedule here: 'NAME=*/5 * * * *=MODULE:ATTR' or 'NAME=every:30=MODULE:ATTR' (repeatable); "
        "each tick starts one durable run, once across every process running it",
    )
    p.add_argument(
        "--schedule-timezone",
        metavar="TZ",
        default="UTC",
        help="the time zone of the --schedule cron expressions (IANA name; default UTC)",
    )
    p.add_argument(
        "--schedule-catch-up",
        action="store_true",
        help="start every tick missed while no scheduler ran (default: only the latest)",
    )


def load_schedules(args: argparse.Namespace) -> list[Schedule]:
    """The `Schedule`s of ``--schedule``, their workflows imported; UsageError (exit 2)
    for a workflow that cannot be, a bad time zone or two schedules of one name."""
    from graflow_async.cli.main import UsageError, load_workflow

    specs: list[ScheduleSpec] = args.schedules
    if specs:
        try:
            zone("--schedule-timezone", args.schedule_timezone)
        except ValueError:
            raise UsageError(f"--schedule-timezone: unknown time zone {args.schedule_timezone!r}") from None
    found: dict[str, Schedule] = {}
    for spec in specs:
        if spec.name in found:
            raise UsageError(f"two --schedule are named {spec.name!r}")
        workflow = load_workflow(spec.target)
        try:
            found[spec.name] = Schedule(
                workflow,
                spec.cron,
                every=spec.every,
                name=spec.name,
                timezone=args.schedule_timezone,
                catch_up=args.schedule_catch_up,
            )
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    return list(found.values())


@contextlib.asynccontextmanager
async def scheduling(schedules: list[Schedule], url: str, namespace: str, secret: Any = None) -> AsyncIterator[None]:
    """While the block runs, run `schedules` with their runs on the Redis at `url` (in
    `namespace`), where workers run their tasks; nothing when there are none."""
    if not schedules:
        yield
        return
    from graflow_async.run.scheduler import Scheduler
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(url, namespace=namespace, secret=secret) as transport:
        async with Scheduler(schedules, transport=transport).running():
            yield
