"""`Schedule` (SPEC 11): a workflow started on a cron expression or every N seconds.

A schedule is checked where it is declared: exactly one of `cron` and `every`, a cron
expression that the cron library (cronsim) accepts, a known time zone, a name that can
stand in a run id. Its ticks, and which of them to start, are worked out by the pure
functions of `define.ticks`; the loop that starts them is `run.scheduler`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any

from cronsim import CronSim, CronSimError

from graflow_async.define.graph import Workflow
from graflow_async.loading import load_instance
from graflow_async.options import number

#: crontab(5)'s shorthands, as Vixie and Debian cron define them (cronsim takes only fields)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_NAME = 170  # a run id is "<name>@<tick>" (at most 200 characters, the tick 25 of them)
EVERY_RESOLUTION_MS = 1  # `every` counts whole milliseconds


def check_name(name: Any) -> str:
    """`name` as a schedule name: it names run ids and keys, so 1-170 visible characters
    without spaces or '/'."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME
        or not name.isprintable()
        or any(c.isspace() for c in name)
        or "/" in name
    ):
        raise ValueError(f"schedule name must be 1-{MAX_NAME} visible characters without spaces or '/', got {name!r}")
    return name


def cron_fields(name: str, cron: Any) -> str:
    """The five fields `cron` stands for (an alias such as ``@daily`` spelled out),
    checked by the cron library; ValueError naming the schedule and the expression."""
    if not isinstance(cron, str):
        raise ValueError(f"schedule {name!r}: cron must be a string, got {cron!r}")
    text = " ".join(cron.split())
    fields = ALIASES.get(text.lower(), text)
    if text.startswith("@") and text.lower() not in ALIASES:
        reason = f"unknown alias (one of {', '.join(ALIASES)})"
    elif len(fields.split()) != 5:
        reason = "a cron expression has five fields (minute hour day-of-month month day-of-week)"
    else:
        try:
            CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
            return fields
        except CronSimError as exc:
            reason = str(exc)
    raise ValueError(f"schedule {name!r}: bad cron expression {cron!r}: {reason}")


def every_ms(name: str, every: Any) -> int:
    """`every` seconds as whole milliseconds (at least 1); ValueError naming the option."""
    seconds = number(f"schedule {name!r}: every", every, above=True)
    ms = round(seconds * 1000)
    if ms < EVERY_RESOLUTION_MS:
        raise ValueError(f"schedule {name!r}: every must be at least 0.001 seconds, got {every!r}")
    return ms


def zone(name: str, timezone: Any) -> tzinfo:
    """The time zone `timezone` names (an IANA name such as ``Europe/Berlin``)."""
    if isinstance(timezone, zoneinfo.ZoneInfo):
        return timezone
    if not isinstance(timezone, str):
        raise ValueError(f"schedule {name!r}: timezone must be an IANA time zone name, got {timezone!r}")
    if timezone.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"schedule {name!r}: unknown timezone {timezone!r}") from None


def _workflow(workflow: Any) -> tuple[Workflow, str | None]:
    """The workflow and, when given as ``module:attr``, that path."""
    if isinstance(workflow, Workflow):
        return workflow, None
    if not isinstance(workflow, str):
        raise TypeError(f"a schedule's workflow is a Workflow or 'module:attr', got {type(workflow).__name__}")
    try:
        return load_instance(workflow, Workflow, "workflow"), workflow
    except LookupError as exc:
        raise ValueError(f"schedule workflow {workflow!r}: {exc}") from None


@dataclass(frozen=True, slots=True, eq=False, init=False)
class Schedule:
    """`workflow` started on `cron` (five fields or an alias, in `timezone`) or `every`
    seconds (exactly one of the two). Each tick starts one durable run whose id is
    ``"<name>@<tick time, ISO 8601 UTC>"`` (`define.ticks.run_id_for`). `name` defaults to
    the workflow's name; `initial_channel` is every run's channel at start; `catch_up`:
    after a time with no scheduler, start every missed tick rather than only the latest."""

    workflow: Workflow
    cron: str | None
    every: float | None
    name: str
    timezone: str
    initial_channel: Mapping[str, Any]
    catch_up: bool
    workflow_ref: str | None  # "module:attr" when the schedule was given one
    fields: str | None = field(repr=False)  # the cron expression's five fields (an alias spelled out)
    every_ms: int | None = field(repr=False)
    zone: tzinfo = field(repr=False)

    def __init__(
        self,
        workflow: Workflow | str,
        cron: str | None = None,
        *,
        every: float | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        initial_channel: Mapping[str, Any] | None = None,
        catch_up: bool = False,
    ) -> None:
        wf, ref = _workflow(workflow)
        name = check_name(wf.name if name is None else name)
        if (cron is None) == (every is None):
            raise ValueError(f"schedule {name!r}: give exactly one of cron and every")
        if not isinstance(catch_up, bool):
            raise TypeError(f"schedule {name!r}: catch_up must be True or False")
        channel = dict(initial_channel or {})
        if not all(isinstance(k, str) for k in channel):
            raise TypeError(f"schedule {name!r}: initial_channel keys must be strings")
        tz = zone(name, timezone)
        fields = None if cron is None else cron_fields(name, cron)
        ms = None if every is None else every_ms(name, every)
        fix = object.__setattr__
        fix(self, "workflow", wf)
        fix(self, "workflow_ref", ref)
        fix(self, "name", name)
        fix(self, "cron", None if cron is None else " ".join(cron.split()))
        fix(self, "every", None if ms is None else ms / 1000)
        fix(self, "timezone", str(timezone) if tz is not UTC else "UTC")
        fix(self, "initial_channel", MappingProxyType(channel))
        fix(self, "catch_up", catch_up)
        fix(self, "fields", fields)
        fix(self, "every_ms", ms)
        fix(self, "zone", tz)

    @property
    def when(self) -> str:
        """How it ticks, for people: the cron expression, or ``every 30 s``."""
        return self.cron if self.cron is not None else f"every {self.every:g} s"
