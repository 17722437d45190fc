"""A conformance kit for `RunRecords` implementations (`records.contract`).

Subclass `RunRecordsSuite` in a test module and give it a ``store`` fixture that yields
a fresh, open, empty store; pytest then runs every check against it:

    class TestMyRecords(RunRecordsSuite):
        @pytest.fixture
        async def store(self):
            async with MyRunRecords(...) as s:
                yield s

It covers saving, reading, listing (order, filters, paging, limits and cursors), cancel
requests kept apart from saves, refusing malformed records, and that nothing handed in
or out is shared with the store. What a store does with records corrupted behind its
back is checked by `feedback.conformance_corrupt`.
"""

from __future__ import annotations

from typing import Any

import pytest

from graflow_async.records.base import MAX_LIMIT, MAX_RECORD_BYTES, RunRecordError, check_record, encode_cursor
from graflow_async.records.contract import RunRecords
from graflow_async.records.corrupt import Listing


def record(run_id: str = "run-1", started_at: float = 100.0, **fields: Any) -> dict[str, Any]:
    """A run record to save (completed by default)."""
    return {
        "run_id": run_id,
        "workflow": fields.pop("workflow", "deploy"),
        "workflow_name": "deploy-wf",
        "status": fields.pop("status", "completed"),
        "started_at": started_at,
        "ended_at": fields.pop("ended_at", started_at + 1.5),
        "error": None,
        "results": {"a": [1, "x"]},
        "checkpoint": None,
        "pending_feedback": [],
        "owner": {"instance": "i-1", "host": "h", "pid": 42},
        "lease_until": None,
        "tasks": {
            "a": {"state": "done", "attempts": 1, "started_at": started_at, "ended_at": started_at + 1, "duration": 1.0}
        },
        **fields,
    }


async def all_pages(store: RunRecords, limit: int, **filters: Any) -> list[list[str]]:
    """The run ids of every page of a listing, page by page."""
    pages, cursor = [], None
    while True:
        runs, cursor = await store.list_runs(limit=limit, cursor=cursor, **filters)
        pages.append([r["run_id"] for r in runs])
        if cursor is None:
            return pages


class RunRecordsSuite:
    """The behaviour every `RunRecords` must show. Needs a ``store`` fixture."""

    async def test_a_saved_record_reads_back_checked_and_replaces_the_last(self, store: RunRecords) -> None:
        assert await store.get_run("run-1") is None
        await store.save_run(record(status="running", ended_at=None))
        await store.save_run(record(error="boom", status="failed"))
        got = await store.get_run("run-1")
        assert got == {**check_record(record(error="boom", status="failed")), "cancel_requested": False}
        assert got["results"] == {"a": [1, "x"]} and got["tasks"]["a"]["state"] == "done"
        assert got["updated_at"] == 100.0  # none given: the start
        runs, cursor = await store.list_runs()
        assert [r["run_id"] for r in runs] == ["run-1"] and cursor is None
        assert isinstance(runs, Listing) and runs.skipped == () and runs.skipped_count == 0

    async def test_listings_are_newest_first_and_pages_follow_the_cursor(self, store: RunRecords) -> None:
        for i in range(7):
            await store.save_run(record(f"run-{i}", started_at=100.0 + i))
        assert await all_pages(store, 3) == [["run-6", "run-5", "run-4"], ["run-3", "run-2", "run-1"], ["run-0"]]
        assert await all_pages(store, 7) == [["run-6", "run-5", "run-4", "run-3", "run-2", "run-1", "run-0"]]
        runs, cursor = await store.list_runs(limit=6)
        assert len(runs) == 6 and cursor is not None
        assert [r["run_id"] for r in (await store.list_runs(limit=6, cursor=cursor))[0]] == ["run-0"]

    async def test_runs_started_at_the_same_time_page_without_loss_or_repeat(self, store: RunRecords) -> None:
        for name in "abcdefg":
            await store.save_run(record(f"run-{name}", started_at=5.0))
        await store.save_run(record("run-z", started_at=6.0))
        pages = await all_pages(store, 2)
        assert [i for p in pages for i in p] == ["run-z", *(f"run-{n}" for n in "gfedcba")]
        assert all(len(p) == 2 for p in pages[:-1])

    async def test_listings_filter_by_status_and_workflow(self, store: RunRecords) -> None:
        facts = [
            ("r1", "completed", "deploy"),
            ("r2", "failed", "deploy"),
            ("r3", "completed", "train"),
            ("r4", "suspended", "deploy"),
            ("r5", "completed", "deploy"),
        ]
        for i, (run_id, status, workflow) in enumerate(facts):
            await store.save_run(record(run_id, started_at=float(i), status=status, workflow=workflow))
        assert await all_pages(store, 1, status="completed", workflow="deploy") == [["r5"], ["r1"]]
        assert await all_pages(store, 10, status="completed") == [["r5", "r3", "r1"]]
        assert await all_pages(store, 10, workflow="train") == [["r3"]]
        assert await all_pages(store, 10, status="cancelled") == [[]]

    async def test_limits_are_capped_and_bad_cursors_and_limits_refused(self, store: RunRecords) -> None:
        for i in range(3):
            await store.save_run(record(f"run-{i}", started_at=float(i)))
        runs, _ = await store.list_runs(limit=10_000)
        assert len(runs) == 3 and MAX_LIMIT == 500
        for bad in ("nope", "W10", encode_cursor((1.0, "x"))[:-2], "x" * 5000):
            with pytest.raises(RunRecordError):
                await store.list_runs(cursor=bad)
        with pytest.raises(RunRecordError):
            await store.list_runs(limit=0)

    async def test_a_cancel_request_is_kept_apart_from_saves(self, store: RunRecords) -> None:
        await store.request_run_cancel("nobody")  # no record: nothing happens
        assert await store.get_run("nobody") is None
        await store.save_run(record(status="running", ended_at=None, cancel_requested=True))
        got = await store.get_run("run-1")
        assert got is not None and got["cancel_requested"] is False  # a save cannot ask
        await store.request_run_cancel("run-1")
        await store.save_run(record(status="running", ended_at=None))  # the owner's heartbeat
        got = await store.get_run("run-1")
        assert got is not None and got["cancel_requested"] is True  # and cannot lose the request
        runs, _ = await store.list_runs()
        assert runs[0]["cancel_requested"] is True

    async def test_malformed_records_are_refused_when_saved(self, store: RunRecords) -> None:
        bad = [
            {**record(), "status": "exploded"},
            {**record(), "run_id": ""},
            {**record(), "started_at": float("nan")},
            {**record(), "tasks": {"a": {"state": "sleeping"}}},
            {**record(), "owner": {"instance": "i", "host": "h", "pid": "1"}},
            {**record(), "error": ["x"]},
            {**record(), "results": {"big": "x" * (MAX_RECORD_BYTES + 1)}},
        ]
        for data in bad:
            with pytest.raises(RunRecordError):
                await store.save_run(data)
        assert (await store.list_runs())[0] == []

    async def test_stores_hand_out_copies(self, store: RunRecords) -> None:
        data = record()
        await store.save_run(data)
        data["results"]["a"].append("changed")
        got = await store.get_run("run-1")
        assert got is not None and got["results"] == {"a": [1, "x"]}
        got["tasks"]["a"]["state"] = "failed"
        runs, _ = await store.list_runs()
        runs[0]["results"]["a"] = None
        again = await store.get_run("run-1")
        assert again is not None and again["tasks"]["a"]["state"] == "done" and again["results"] == {"a": [1, "x"]}

    async def test_any_string_is_a_usable_run_id(self, store: RunRecords) -> None:
        odd = ["../escape", "a/b\\c", "CON", "Upper", "upper", "spaces and ünïcödé", "x" * 200, "a:b:c"]
        for i, run_id in enumerate(odd):
            await store.save_run(record(run_id, started_at=float(i)))
        assert [r["run_id"] for r in (await store.list_runs())[0]] == odd[::-1]
        for run_id in odd:
            got = await store.get_run(run_id)
            assert got is not None and got["run_id"] == run_id
