"""A conformance kit for what a store does with records corrupted behind its back (by a
bug, a full disk, a hostile process with access to the files or the Redis server).

A store that keeps records outside the process (files, Redis) subclasses the suites of
the contracts it implements and gives them two fixtures: ``store`` (a fresh, open,
empty store) and ``damage``, an async callable ``damage(kind, record_id, how)`` that
writes a corrupt record straight into the backend where the store would keep
``record_id``, and lists it where the store's listings look (an index, a directory).
``kind`` is "request", "suspension" or "run"; ``how`` one of `HOWS` (each suite says
which it asks for):

- "not-json": bytes that are not JSON;
- "wrong-types": the right fields with values of the wrong types;
- "wrong-schema": a JSON value that is not such a record at all;
- "huge": more bytes than the store reads;
- "wrong-kind": not a file (a FIFO), or a Redis key of another type;
- "other-id": a well-formed record, of another id;
- "bad-answer" (requests only): an answered request whose answer is not JSON or not one.

Each corrupt record holds `MARK`; the suites check that it shows in no error and no log
line. A corrupt record must be left out of listings and named in their ``skipped``,
raise `FeedbackCorruptError` or `CorruptRecordError` when read directly, be logged once
(not at every listing), and be replaced by the next write where the contract says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Protocol

import pytest
import structlog
from structlog.testing import capture_logs

from graflow_async.exceptions import CorruptRecordError, FeedbackCorruptError, FeedbackError
from graflow_async.feedback.conformance import ask, ids
from graflow_async.feedback.contracts import FeedbackRequests, Suspensions
from graflow_async.records.conformance import record
from graflow_async.records.contract import RunRecords

MARK = "secret-content-C0FFEE"  # in every corrupt record: never in an error or a log line
HOWS = ("not-json", "wrong-types", "wrong-schema", "huge", "wrong-kind", "other-id")
REQUEST_HOWS = (*HOWS, "bad-answer")
SUSPENSION_HOWS = ("not-json", "wrong-types", "wrong-schema", "huge", "wrong-kind")
REQUEST_EVENT = "skipped an unreadable feedback record"
RUN_EVENT = "skipped an unreadable run record"


class Damage(Protocol):
    async def __call__(self, kind: str, record_id: str, how: str) -> None: ...


class _Logs:
    @pytest.fixture
    def logs(self) -> Iterator[list[MutableMapping[str, Any]]]:
        """The log lines of the test (structlog left as unconfigured as it was found)."""
        was_configured = structlog.is_configured()
        try:
            with capture_logs() as entries:
                yield entries
        finally:
            if not was_configured:
                structlog.reset_defaults()


def _warned(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    assert MARK not in repr(logs)
    return [e for e in logs if e["event"] == event]


async def _corrupt(call: Callable[[], Awaitable[Any]], kind: type[CorruptRecordError], record_id: str) -> None:
    with pytest.raises(kind) as caught:
        await call()
    assert caught.value.record_id == record_id and MARK not in str(caught.value)


class CorruptRequestsSuite(_Logs):
    """Corrupt feedback requests. Needs ``store`` (a `FeedbackRequests`) and ``damage``."""

    @pytest.mark.parametrize("how", REQUEST_HOWS)
    async def test_listings_leave_a_corrupt_request_out_and_name_it(
        self, store: FeedbackRequests, damage: Damage, logs: list[MutableMapping[str, Any]], how: str
    ) -> None:
        await store.create(ask("good-1", created_at=1.0))
        await store.create(ask("good-2", "run-2", created_at=2.0))
        await damage("request", "bad", how)
        for _ in range(2):
            for listing, expected in [
                (await store.list(), ["good-1", "good-2"]),
                (await store.list_pending(), ["good-1", "good-2"]),
                (await store.list("run-2"), ["good-2"]),
                (await store.list(status="answered"), []),
            ]:
                assert ids(listing) == expected
                assert listing.skipped_count == len(listing.skipped) == 1
                assert MARK not in repr(listing.skipped)
        assert len(_warned(logs, REQUEST_EVENT)) == 1  # once, not at every listing

    @pytest.mark.parametrize("how", REQUEST_HOWS)
    async def test_a_corrupt_request_read_directly_raises_and_is_not_replaced(
        self, store: FeedbackRequests, damage: Damage, logs: list[MutableMapping[str, Any]], how: str
    ) -> None:
        await damage("request", "bad", how)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get("bad"),
            lambda: store.respond("bad", {"approved": True}),
            lambda: store.cancel("bad"),
            lambda: store.wait("bad", timeout=1.0),
            lambda: store.create(ask("bad")),
            lambda: store.get("bad"),  # the create did not replace it
        ]
        for call in calls:
            await _corrupt(call, FeedbackCorruptError, "bad")
        assert issubclass(FeedbackCorruptError, FeedbackError)
        assert _warned(logs, REQUEST_EVENT)
        await store.create(ask("good"))  # the others are not affected
        assert (await store.respond("good", {"approved": True})).approved is True


class CorruptSuspensionsSuite(_Logs):
    """Corrupt suspensions. Needs ``store`` (a `Suspensions`) and ``damage``."""

    @pytest.mark.parametrize("how", SUSPENSION_HOWS)
    async def test_a_corrupt_suspension_raises_and_the_next_write_replaces_it(
        self, store: Suspensions, damage: Damage, logs: list[MutableMapping[str, Any]], how: str
    ) -> None:
        await damage("suspension", "run-1", how)
        await _corrupt(lambda: store.get_suspension("run-1"), CorruptRecordError, "run-1")
        with pytest.raises(CorruptRecordError) as caught:
            await store.get_suspension("run-1")
        assert caught.value.kind == "suspension"
        await store.set_suspension("run-1", {"checkpoint": "c", "workflow": "w"})
        assert await store.get_suspension("run-1") == {"checkpoint": "c", "workflow": "w"}
        await damage("suspension", "run-1", how)
        await store.set_suspension("run-1", None)
        assert await store.get_suspension("run-1") is None
        assert _warned(logs, REQUEST_EVENT)


class CorruptRunRecordsSuite(_Logs):
    """Corrupt run records. Needs ``store`` (a `RunRecords`) and ``damage``."""

    @pytest.mark.parametrize("how", HOWS)
    async def test_a_corrupt_run_record_is_left_out_raises_when_read_and_a_save_replaces_it(
        self, store: RunRecords, damage: Damage, logs: list[MutableMapping[str, Any]], how: str
    ) -> None:
        await store.save_run(record("good", started_at=1.0))
        await store.save_run(record("newer", started_at=3.0))
        await damage("run", "bad", how)
        for _ in range(2):
            runs, cursor = await store.list_runs()
            assert [r["run_id"] for r in runs] == ["newer", "good"] and cursor is None
            assert runs.skipped_count == 1 and MARK not in repr(runs.skipped)
            page, cursor = await store.list_runs(limit=1)
            assert [r["run_id"] for r in page] == ["newer"]
            assert [r["run_id"] for r in (await store.list_runs(limit=1, cursor=cursor))[0]] == ["good"]
        await _corrupt(lambda: store.get_run("bad"), CorruptRecordError, "bad")
        assert len(_warned(logs, RUN_EVENT)) == 1  # once, not at every listing or read
        await store.save_run(record("bad", started_at=2.0))
        runs, _ = await store.list_runs()
        assert [r["run_id"] for r in runs] == ["newer", "bad", "good"] and runs.skipped_count == 0
        assert (await store.get_run("bad") or {}).get("workflow") == "deploy"
