"""Schedules (SPEC 11) as pure values: declaring one, its ticks in time zones and across
daylight-saving changes, `every`, aliases, and which missed ticks to start (catch_up
on and off). No event loop: `define.ticks` is a function of the schedule, the last tick
and the time now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import schedule_flows

from graflow_async import Schedule, task, workflow
from graflow_async.define.ticks import (
    MAX_CATCH_UP,
    due,
    latest_tick,
    next_tick,
    parse_tick,
    run_id_for,
    tick_text,
    ticks_between,
)


@task
def make_report() -> str:
    return "report"


with workflow("nightly_report") as nightly:
    nightly.add(make_report)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def texts(ticks: list[datetime] | tuple[datetime, ...]) -> list[str]:
    return [tick_text(t) for t in ticks]


# --- declaring ------------------------------------------------------------------------------------
def test_a_schedule_takes_its_name_from_the_workflow_and_a_workflow_by_import_path() -> None:
    s = Schedule(nightly, "0 2 * * *")
    assert (s.name, s.cron, s.every, s.timezone, s.catch_up) == ("nightly_report", "0 2 * * *", None, "UTC", False)
    by_path = Schedule("schedule_flows:hello", every=30)
    assert by_path.workflow is schedule_flows.hello and by_path.workflow_ref == "schedule_flows:hello"
    assert by_path.name == "hello" and by_path.every == 30.0 and by_path.cron is None


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({}, "exactly one of cron and every"),
        ({"cron": "@daily", "every": 60}, "exactly one of cron and every"),
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({"every": float("nan")}, "every"),
        ({"every": float("inf")}, "every"),
        ({"every": 0.0001}, "every"),
        ({"cron": "@daily", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "@daily", "name": "two words"}, "name"),
        ({"cron": "@daily", "name": "a/b"}, "name"),
    ],
)
def test_bad_options_are_refused_naming_the_option(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Schedule(nightly, **kwargs)


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "0 0 * * * *", "@often", "0 0 30 2 *", "x y z w v", ""])
def test_a_bad_cron_is_a_value_error_naming_the_schedule_and_the_expression(cron: str) -> None:
    with pytest.raises(ValueError) as caught:
        Schedule(nightly, cron, name="broken")
    assert "'broken'" in str(caught.value) and repr(cron) in str(caught.value)


def test_a_workflow_that_is_not_one_is_refused() -> None:
    with pytest.raises(TypeError):
        Schedule(42, "@daily")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no_such_module"):
        Schedule("no_such_module:wf", "@daily")


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_tick_as_their_fields(alias: str, fields: str) -> None:
    at = utc(2026, 5, 17, 13, 45, 12)
    assert next_tick(Schedule(nightly, alias), at) == next_tick(Schedule(nightly, fields), at)


def test_alias_ticks() -> None:
    at = utc(2026, 5, 17, 13, 45, 12)  # a Sunday
    assert texts([next_tick(Schedule(nightly, "@hourly"), at)]) == ["2026-05-17T14:00:00Z"]
    assert texts([next_tick(Schedule(nightly, "@daily"), at)]) == ["2026-05-18T00:00:00Z"]
    assert texts([next_tick(Schedule(nightly, "@weekly"), at)]) == ["2026-05-24T00:00:00Z"]
    assert texts([next_tick(Schedule(nightly, "@monthly"), at)]) == ["2026-06-01T00:00:00Z"]
    assert texts([next_tick(Schedule(nightly, "@YEARLY"), at)]) == ["2027-01-01T00:00:00Z"]


# --- ticks ----------------------------------------------------------------------------------------
def test_cron_ticks_in_a_time_zone_are_local_times() -> None:
    s = Schedule(nightly, "0 9 * * 1-5", timezone="America/New_York")
    ticks = ticks_between(s, utc(2026, 1, 9, 0), utc(2026, 1, 14, 0))  # Fri 9 .. Tue 13 January (EST, UTC-5)
    assert texts(ticks) == ["2026-01-09T14:00:00Z", "2026-01-12T14:00:00Z", "2026-01-13T14:00:00Z"]


def test_a_time_that_does_not_exist_on_the_spring_forward_night_runs_at_the_first_minute_that_does() -> None:
    s = Schedule(nightly, "30 2 * * *", timezone="Europe/Berlin")  # 2026-03-29: 02:00 CET -> 03:00 CEST
    ticks = ticks_between(s, utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    assert texts(ticks) == [
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST: 02:30 did not exist
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
    ]


def test_a_time_that_happens_twice_on_the_fall_back_night_runs_once() -> None:
    s = Schedule(nightly, "30 2 * * *", timezone="Europe/Berlin")  # 2026-10-25: 03:00 CEST -> 02:00 CET
    ticks = ticks_between(s, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))
    assert texts(ticks) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",  # the first 02:30 (CEST) only
        "2026-10-26T01:30:00Z",  # 02:30 CET
        "2026-10-27T01:30:00Z",
    ]


def test_steps_through_every_hour_follow_real_time_across_the_change() -> None:
    s = Schedule(nightly, "*/30 * * * *", timezone="Europe/Berlin")
    ticks = ticks_between(s, utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 15))
    # local 02:00 and 02:30 happen twice that night: four real half-hours, none skipped or doubled
    assert texts(ticks) == [f"2026-10-25T{h:02d}:{m:02d}:00Z" for h in range(3) for m in (0, 30)][:5]


def test_every_ticks_are_multiples_of_the_interval_from_the_epoch() -> None:
    s = Schedule(nightly, every=3600)
    assert texts([next_tick(s, utc(2026, 5, 1, 10, 59, 59))]) == ["2026-05-01T11:00:00Z"]
    assert texts([next_tick(s, utc(2026, 5, 1, 11))]) == ["2026-05-01T12:00:00Z"]  # strictly after
    assert texts([latest_tick(s, utc(2026, 5, 1, 11))]) == ["2026-05-01T11:00:00Z"]  # at or before
    fast = Schedule(nightly, every=0.3, name="beat")
    assert texts(ticks_between(fast, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 1))) == [
        "2026-01-01T00:00:00.300Z",
        "2026-01-01T00:00:00.600Z",
        "2026-01-01T00:00:00.900Z",
    ]


def test_run_ids_name_the_schedule_and_the_tick_in_one_format_per_schedule() -> None:
    daily = Schedule(nightly, "@daily", name="nightly")
    assert run_id_for(daily, utc(2026, 12, 6)) == "nightly@2026-12-06T00:00:00Z"
    beat = Schedule(nightly, every=0.5, name="beat")  # sub-second: every tick has milliseconds
    assert run_id_for(beat, utc(2026, 12, 6, 9)) == "beat@2026-12-06T09:00:00.000Z"
    assert run_id_for(beat, utc(2026, 12, 6, 9) + timedelta(milliseconds=500)) == "beat@2026-12-06T09:00:00.500Z"
    for text in ("2026-12-06T09:00:00Z", "2026-12-06T09:00:00.500Z"):
        assert tick_text(parse_tick(text), millis="." in text) == text
    for bad in ("2026-12-06 09:00:00", "2026-12-06T09:00:00+01:00", "", "2026-13-06T09:00:00Z"):
        with pytest.raises(ValueError):
            parse_tick(bad)


# --- which ticks to start -------------------------------------------------------------------------
def test_nothing_is_due_before_the_next_tick() -> None:
    s = Schedule(nightly, "0 * * * *")
    decision = due(s, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 59, 59))
    assert decision.start == () and decision.next == utc(2026, 5, 1, 11)


def test_a_tick_just_passed_is_due_once() -> None:
    s = Schedule(nightly, "0 * * * *")
    decision = due(s, utc(2026, 5, 1, 10), utc(2026, 5, 1, 11, 0, 0, 2000))
    assert decision.start == (utc(2026, 5, 1, 11),) and decision.next == utc(2026, 5, 1, 12)
    again = due(s, decision.start[-1], utc(2026, 5, 1, 11, 0, 1))  # the next look: it was dealt with
    assert again.start == ()


def test_without_catch_up_only_the_latest_missed_tick_starts() -> None:
    s = Schedule(nightly, "0 * * * *")
    decision = due(s, utc(2026, 5, 1, 3), utc(2026, 5, 1, 10, 30))  # down from 03:00 to 10:30
    assert texts(decision.start) == ["2026-05-01T10:00:00Z"]
    assert decision.next == utc(2026, 5, 1, 11)


def test_with_catch_up_every_missed_tick_starts_oldest_first() -> None:
    s = Schedule(nightly, "0 * * * *", catch_up=True)
    decision = due(s, utc(2026, 5, 1, 3), utc(2026, 5, 1, 10, 30))
    assert texts(decision.start) == [f"2026-05-01T{h:02d}:00:00Z" for h in range(4, 11)]
    beat = Schedule(nightly, every=10, catch_up=True)
    assert texts(due(beat, utc(2026, 5, 1), utc(2026, 5, 1, 0, 0, 35)).start) == [
        "2026-05-01T00:00:10Z",
        "2026-05-01T00:00:20Z",
        "2026-05-01T00:00:30Z",
    ]


def test_catch_up_across_a_daylight_saving_change_starts_each_local_day_once() -> None:
    s = Schedule(nightly, "30 2 * * *", timezone="Europe/Berlin", catch_up=True)
    decision = due(s, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))
    assert texts(decision.start) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
    ]


def test_catch_up_starts_at_most_the_latest_limit_of_missed_ticks() -> None:
    s = Schedule(nightly, "* * * * *", catch_up=True)
    decision = due(s, utc(2025, 1, 1), utc(2026, 1, 1, 0, 0, 30))  # a year of minutes missed
    assert len(decision.start) == MAX_CATCH_UP
    assert decision.start[-1] == utc(2026, 1, 1) and decision.start[0] == utc(2026, 1, 1) - timedelta(minutes=999)
    small = due(Schedule(nightly, every=1, catch_up=True), utc(2026, 1, 1), utc(2026, 1, 1, 1), limit=3)
    assert texts(small.start) == ["2026-01-01T00:59:58Z", "2026-01-01T00:59:59Z", "2026-01-01T01:00:00Z"]


def test_a_tick_at_the_last_tick_is_not_due_again() -> None:
    s = Schedule(nightly, every=60, catch_up=True)
    assert due(s, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10)).start == ()
    assert texts(due(s, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 1)).start) == ["2026-05-01T10:01:00Z"]


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        due(Schedule(nightly, "@daily"), datetime(2026, 1, 1), utc(2026, 1, 2))
