"""Run records: the conformance suites (`graflow_async.records.conformance`, and the
corrupt-record suite of `feedback.conformance_corrupt`) over the stores' memory, file
and Redis (a real server) backends, the record checks and cursors as plain values, and
what each backend does on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from feedback_backends import Backend, OverBackends, OverSharedBackends

from graflow_async.exceptions import CorruptRecordError
from graflow_async.feedback import FileFeedbackStore, RedisFeedbackStore
from graflow_async.feedback.conformance_corrupt import CorruptRunRecordsSuite
from graflow_async.records.base import (
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
from graflow_async.records.conformance import RunRecordsSuite, record


class TestRunRecords(OverBackends, RunRecordsSuite):
    async def test_records_outlive_the_store_object(self, backend: Backend) -> None:
        async with backend.make() as first:
            await first.save_run(record("run-old", started_at=1.0))
            await first.request_run_cancel("run-old")
        async with backend.make() as second:
            got = await second.get_run("run-old")
            assert got is not None and got["cancel_requested"] is True and got["workflow"] == "deploy"
            assert [r["run_id"] for r in (await second.list_runs())[0]] == ["run-old"]


class TestCorruptRunRecords(OverSharedBackends, CorruptRunRecordsSuite):
    pass


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
            assert listed.skipped == ("deep.json", "garbage.json", "huge.json", "wrong.json")
        with pytest.raises(CorruptRecordError):
            await store.get_run("garbage")
    warnings = [e for e in log_capture if e["event"] == "skipped an unreadable run record"]
    paths = sorted(Path(e["path"]).name for e in warnings)
    assert paths == ["deep.json", "garbage.json", "huge.json", "wrong.json"]  # once each


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
            assert [r["run_id"] for r in listed] == ["good"] and listed.skipped == ("other", "bad")
        assert await client.zscore("rr:runs:index", "expired") is None
        assert await client.zscore("rr:runs:index", "bad") is not None  # corrupt, not gone: kept in sight
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
    from graflow_async.feedback import MemoryFeedbackStore
    from graflow_async.records import memory

    monkeypatch.setattr(memory, "MAX_MEMORY_RUNS", 10)
    store = MemoryFeedbackStore()
    await store.save_run(record("still-running", started_at=0.0, status="running", ended_at=None))
    for i in range(11):
        await store.save_run(record(f"r{i}", started_at=float(i + 1)))
    runs, _ = await store.list_runs()
    assert [r["run_id"] for r in runs] == [f"r{i}" for i in range(10, 1, -1)] + ["still-running"]  # r0, r1 went
