"""Run records in the feedback stores: one conformance suite over memory, file and Redis
(a real server), the record checks and cursors as plain values, and what each backend
does with records it cannot read (skips them, logs them, never fails a listing)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from feedback_backends import Backend, make_backend

from graflow_async.feedback import FeedbackStore, FileFeedbackStore, RedisFeedbackStore
from graflow_async.records.base import (
    MAX_LIMIT,
    MAX_RECORD_BYTES,
    RunRecordError,
    ascending_page,
    bounded_results,
    check_record,
    decode_cursor,
    decode_record,
    encode_cursor,
    encode_record,
    page,
)


@pytest.fixture(params=["memory", "file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, request.param, tmp_path)


@pytest.fixture(params=["file", "redis"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, request.param, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[FeedbackStore]:
    async with backend.make() as opened:
        yield opened


def record(run_id: str = "run-1", started_at: float = 100.0, **fields: Any) -> dict[str, Any]:
    return {
        "run_id": run_id, "workflow": fields.pop("workflow", "deploy"), "workflow_name": "deploy-wf",
        "status": fields.pop("status", "completed"), "started_at": started_at,
        "ended_at": fields.pop("ended_at", started_at + 1.5), "error": None, "results": {"a": [1, "x"]},
        "checkpoint": None, "pending_feedback": [], "owner": {"instance": "i-1", "host": "h", "pid": 42},
        "lease_until": None, "tasks": {"a": {"state": "done", "attempts": 1, "started_at": started_at,
                                             "ended_at": started_at + 1, "duration": 1.0}},
        **fields,
    }


async def all_pages(store: FeedbackStore, limit: int, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        runs, cursor = await store.list_runs(limit=limit, cursor=cursor, **filters)
        pages.append([r["run_id"] for r in runs])
        if cursor is None:
            return pages


# --- the contract --------------------------------------------------------------------------------


async def test_a_saved_record_reads_back_checked_and_replaces_the_last(store: FeedbackStore) -> None:
    assert await store.get_run("run-1") is None
    await store.save_run(record(status="running", ended_at=None))
    await store.save_run(record(error="boom", status="failed"))
    got = await store.get_run("run-1")
    assert got == {**check_record(record(error="boom", status="failed")), "cancel_requested": False}
    assert got["results"] == {"a": [1, "x"]} and got["tasks"]["a"]["state"] == "done"
    assert got["updated_at"] == 100.0  # none given: the start
    runs, cursor = await store.list_runs()
    assert [r["run_id"] for r in runs] == ["run-1"] and cursor is None


async def test_listings_are_newest_first_and_pages_follow_the_cursor(store: FeedbackStore) -> None:
    for i in range(7):
        await store.save_run(record(f"run-{i}", started_at=100.0 + i))
    assert await all_pages(store, 3) == [["run-6", "run-5", "run-4"], ["run-3", "run-2", "run-1"], ["run-0"]]
    assert await all_pages(store, 7) == [["run-6", "run-5", "run-4", "run-3", "run-2", "run-1", "run-0"]]
    runs, cursor = await store.list_runs(limit=6)
    assert len(runs) == 6 and cursor is not None
    assert [r["run_id"] for r in (await store.list_runs(limit=6, cursor=cursor))[0]] == ["run-0"]


async def test_runs_started_at_the_same_time_page_without_loss_or_repeat(store: FeedbackStore) -> None:
    for name in "abcdefg":
        await store.save_run(record(f"run-{name}", started_at=5.0))
    await store.save_run(record("run-z", started_at=6.0))
    pages = await all_pages(store, 2)
    assert [i for p in pages for i in p] == ["run-z", *(f"run-{n}" for n in "gfedcba")]
    assert all(len(p) == 2 for p in pages[:-1])


async def test_listings_filter_by_status_and_workflow(store: FeedbackStore) -> None:
    facts = [("r1", "completed", "deploy"), ("r2", "failed", "deploy"), ("r3", "completed", "train"),
             ("r4", "suspended", "deploy"), ("r5", "completed", "deploy")]
    for i, (run_id, status, workflow) in enumerate(facts):
        await store.save_run(record(run_id, started_at=float(i), status=status, workflow=workflow))
    assert await all_pages(store, 1, status="completed", workflow="deploy") == [["r5"], ["r1"]]
    assert await all_pages(store, 10, status="completed") == [["r5", "r3", "r1"]]
    assert await all_pages(store, 10, workflow="train") == [["r3"]]
    assert await all_pages(store, 10, status="cancelled") == [[]]


async def test_limits_are_capped_and_bad_cursors_and_limits_refused(store: FeedbackStore) -> None:
    for i in range(3):
        await store.save_run(record(f"run-{i}", started_at=float(i)))
    runs, _ = await store.list_runs(limit=10_000)
    assert len(runs) == 3 and MAX_LIMIT == 500
    for bad in ("nope", "W10", encode_cursor((1.0, "x"))[:-2], "x" * 5000):
        with pytest.raises(RunRecordError):
            await store.list_runs(cursor=bad)
    with pytest.raises(RunRecordError):
        await store.list_runs(limit=0)


async def test_a_cancel_request_is_kept_apart_from_saves(store: FeedbackStore) -> None:
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


async def test_malformed_records_are_refused_when_saved(store: FeedbackStore) -> None:
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


async def test_stores_hand_out_copies(store: FeedbackStore) -> None:
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


async def test_records_outlive_the_store_object(shared_backend: Backend) -> None:
    async with shared_backend.make() as first:
        await first.save_run(record("run-old", started_at=1.0))
        await first.request_run_cancel("run-old")
    async with shared_backend.make() as second:
        got = await second.get_run("run-old")
        assert got is not None and got["cancel_requested"] is True and got["workflow"] == "deploy"
        assert [r["run_id"] for r in (await second.list_runs())[0]] == ["run-old"]


# --- unreadable records are skipped ----------------------------------------------------------------


async def test_file_store_skips_unreadable_records_and_logs_each_once(
    tmp_path: Path, log_capture: list[dict[str, Any]]
) -> None:
    async with FileFeedbackStore(tmp_path / "feedback") as store:
        assert store.runs_directory == tmp_path / "runs"
        assert FileFeedbackStore(tmp_path / "hitl").runs_directory == tmp_path / "hitl" / "run-records"
        assert FileFeedbackStore(tmp_path, runs_directory=tmp_path / "x").runs_directory == tmp_path / "x"
        await store.save_run(record("good", started_at=1.0))
        runs = tmp_path / "runs"
        (runs / "garbage.json").write_bytes(b"{not json")
        (runs / "wrong.json").write_text(json.dumps({**record("wrong"), "status": 7}))
        (runs / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
        (runs / "huge.json").write_text(json.dumps(record("huge", results={"x": "y" * MAX_RECORD_BYTES})))
        for _ in range(2):
            listed, cursor = await store.list_runs()
            assert [r["run_id"] for r in listed] == ["good"] and cursor is None
        assert await store.get_run("garbage") is None
    warnings = [e for e in log_capture if e["event"] == "skipped an unreadable run record"]
    paths = sorted(Path(e["path"]).name for e in warnings)
    assert paths == ["deep.json", "garbage.json", "garbage.json", "huge.json", "wrong.json"]  # get logs again


async def test_file_store_notices_a_record_changed_by_another_process(tmp_path: Path) -> None:
    async with FileFeedbackStore(tmp_path / "feedback") as mine, FileFeedbackStore(tmp_path / "feedback") as theirs:
        await mine.save_run(record(status="running", ended_at=None))
        assert (await mine.list_runs(status="running"))[0]
        await theirs.save_run(record(status="completed"))
        assert [r["status"] for r in (await mine.list_runs())[0]] == ["completed"]


async def test_redis_store_skips_unreadable_records_and_drops_expired_ids(
    redis_url: str, client: Any, log_capture: list[dict[str, Any]]
) -> None:
    async with RedisFeedbackStore(redis_url, namespace="rr") as store:
        await store.save_run(record("good", started_at=1.0))
        await client.set("rr:runs:record:bad", b"\xff\xfe not json")
        await client.set("rr:runs:record:other", json.dumps(record("someone-else")))
        await client.zadd("rr:runs:index", {"bad": 2.0, "other": 3.0, "expired": 4.0})
        for _ in range(2):
            listed, _ = await store.list_runs()
            assert [r["run_id"] for r in listed] == ["good"]
        assert await client.zscore("rr:runs:index", "expired") is None
        assert 0 < await client.ttl("rr:runs:record:good") <= store.ttl
    warnings = [e for e in log_capture if e["event"] == "skipped an unreadable run record"]
    assert sorted(e["key"] for e in warnings) == ["rr:runs:record:bad", "rr:runs:record:other"]


# --- the record and its cursor as values ---------------------------------------------------------------


def test_check_record_normalizes_and_bounds() -> None:
    checked = check_record({**record(), "error": "e" * 10_000, "workflow_name": None, "extra": 1})
    assert len(checked["error"]) == 4096 and checked["workflow_name"] == "deploy"
    assert "extra" not in checked and checked["cancel_requested"] is False
    assert decode_record(encode_record(record())) == check_record(record())
    with pytest.raises(RunRecordError):
        decode_record(b"[1]")
    with pytest.raises(RunRecordError):
        decode_record(b" " * (MAX_RECORD_BYTES + 1))


def test_results_too_large_are_not_kept_and_odd_values_become_text() -> None:
    assert bounded_results({"a": b"\x00", "b": (1, 2)}) == {"a": "b'\\x00'", "b": [1, 2]}
    assert bounded_results({"a": "x" * 70_000}) is None
    assert bounded_results({"a": float("nan")}) is None


def test_cursors_round_trip_and_pages_are_consistent() -> None:
    assert decode_cursor(encode_cursor((1.5, "r/ü"))) == (1.5, "r/ü")
    records = [check_record(record(f"r{i}", started_at=float(i % 3))) for i in range(10)]
    seen, cursor = [], None
    while True:
        chosen, cursor = page(records, limit=4, cursor=cursor)
        seen += [r["run_id"] for r in chosen]
        if cursor is None:
            break
    assert seen == [r["run_id"] for r in sorted(records, key=lambda r: (r["started_at"], r["run_id"]), reverse=True)]
    items = [(float(i), f"f{i}") for i in range(5)]
    first, cursor = ascending_page(items, lambda x: x, limit=2)
    second, cursor2 = ascending_page(items, lambda x: x, limit=2, cursor=cursor)
    last, none = ascending_page(items, lambda x: x, limit=2, cursor=cursor2)
    assert (first, second, last, none) == (items[:2], items[2:4], items[4:], None)


async def test_the_memory_store_forgets_the_oldest_ended_runs_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from graflow_async.feedback import memory

    monkeypatch.setattr(memory, "MAX_MEMORY_RUNS", 10)
    store = memory.MemoryFeedbackStore()
    await store.save_run(record("still-running", started_at=0.0, status="running", ended_at=None))
    for i in range(11):
        await store.save_run(record(f"r{i}", started_at=float(i + 1)))
    runs, _ = await store.list_runs()
    assert [r["run_id"] for r in runs] == [f"r{i}" for i in range(10, 1, -1)] + ["still-running"]  # r0, r1 went
