"""The feedback contracts' conformance suites (`graflow_async.feedback.conformance`,
`conformance_corrupt`) over memory, file and Redis (a real server), plus what only
shared stores promise: an answer given in another process wakes a waiter here at once
(no polling), and of racing answers exactly one wins; then what each backend does
on its own."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from feedback_backends import Backend, OverBackends, OverSharedBackends
from redis.asyncio import Redis
from redis_server import RedisServer
from worker_processes import wait_for

from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackCancelledError,
    FeedbackCorruptError,
    TransportError,
)
from graflow_async.feedback import FeedbackResponse, FileFeedbackStore, RedisFeedbackStore
from graflow_async.feedback.conformance import ODD_IDS, FeedbackRequestsSuite, SuspensionsSuite, ask, started
from graflow_async.feedback.conformance_corrupt import CorruptRequestsSuite, CorruptSuspensionsSuite
from graflow_async.records.conformance import record


class TestFeedbackRequests(OverBackends, FeedbackRequestsSuite):
    pass


class TestSuspensions(OverBackends, SuspensionsSuite):
    pass


class TestCorruptRequests(OverSharedBackends, CorruptRequestsSuite):
    pass


class TestCorruptSuspensions(OverSharedBackends, CorruptSuspensionsSuite):
    pass


# -- what only shared stores promise -------------------------------------------------

CHILD = """
import asyncio, json, sys, time
from graflow_async.feedback.file import FileFeedbackStore
from graflow_async.feedback.redis import RedisFeedbackStore

async def main(action, feedback_id, start_at):
    async with {store} as store:
        await asyncio.sleep(max(0.0, start_at - time.time()))  # the racers act at one agreed instant
        try:
            if action == "respond":
                await store.respond(feedback_id, {{"approved": True, "responded_by": sys.argv[4]}})
            else:
                await store.cancel(feedback_id)
        except Exception as exc:
            print(json.dumps({{"error": type(exc).__name__}}), flush=True)
        else:
            print(json.dumps({{"settled_at": time.time()}}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def in_child(
    backend: Backend, action: str, feedback_id: str, name: str = "child", start_at: float = 0.0
) -> dict[str, Any]:
    """Run `action` on `feedback_id` through a store of another process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD.format(store=backend.child_expr),
        action,
        feedback_id,
        str(start_at),
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20.0)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


class TestSharedStores(OverSharedBackends):
    """What only stores shared by processes promise (file and Redis)."""

    async def test_an_answer_from_another_process_wakes_the_waiter(self, backend: Backend) -> None:
        async with backend.make() as store:
            await store.create(ask())

            async def wait_and_stamp() -> tuple[FeedbackResponse, float]:
                return await store.wait("fb-1", timeout=30.0), time.time()

            waiter = await started(wait_and_stamp())
            child = await in_child(backend, "respond", "fb-1")
            response, woke_at = await asyncio.wait_for(waiter, 5.0)
            assert (response.approved, response.responded_by) == (True, "child")
            # Far below the timeout: the waiter was woken, it did not poll or time out.
            assert woke_at - child["settled_at"] < 1.0

    async def test_a_cancellation_from_another_process_wakes_the_waiter(self, backend: Backend) -> None:
        async with backend.make() as store:
            await store.create(ask())
            waiter = await started(store.wait("fb-1", timeout=30.0))
            child = await in_child(backend, "cancel", "fb-1")
            with pytest.raises(FeedbackCancelledError):
                await asyncio.wait_for(waiter, 5.0)
            assert time.time() - child["settled_at"] < 1.0

    async def test_of_two_stores_racing_to_answer_exactly_one_wins(self, backend: Backend) -> None:
        async with backend.make() as first, backend.make() as second:
            for round_ in range(10):
                feedback_id = f"race-{round_}"
                await first.create(ask(feedback_id, kind="text"))
                outcomes = await asyncio.gather(
                    first.respond(feedback_id, {"text": "first"}),
                    second.respond(feedback_id, {"text": "second"}),
                    return_exceptions=True,
                )
                won = [o for o in outcomes if isinstance(o, FeedbackResponse)]
                lost = [o for o in outcomes if isinstance(o, FeedbackAlreadyAnsweredError)]
                assert (len(won), len(lost)) == (1, 1), outcomes
                assert (await second.get(feedback_id))[1] == won[0]
                assert (await first.get(feedback_id))[1] == won[0]

    async def test_of_processes_racing_to_answer_exactly_one_wins(self, backend: Backend) -> None:
        async with backend.make() as store:
            await store.create(ask())
            start_at = time.time() + 1.0  # all children answer at the same moment
            results = await asyncio.gather(
                *(in_child(backend, "respond", "fb-1", f"child-{i}", start_at) for i in range(3)),
                in_child(backend, "cancel", "fb-1", "canceller", start_at),
            )
            winners = [r for r in results if "settled_at" in r]
            assert len(winners) == 1, results
            assert all(r.get("error") == "FeedbackAlreadyAnsweredError" for r in results if r not in winners)
            request, response = await store.get("fb-1")
            assert request.status in ("answered", "cancelled")
            assert (response is None) == (request.status == "cancelled")


# -- backend specifics -------------------------------------------------------------


async def test_file_store_keeps_files_inside_its_directory(tmp_path: Path) -> None:
    directory = tmp_path / "feedback"
    async with FileFeedbackStore(directory) as store:
        for feedback_id in ODD_IDS:
            await store.create(ask(feedback_id))
            await store.respond(feedback_id, {"approved": True})
        await store.set_suspension("../run", {"checkpoint": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback"]
    assert {p.parent for p in directory.rglob("*") if p.is_file()} == {directory, directory / "runs"}
    assert not [p for p in directory.iterdir() if p.name.endswith((".tmp", ".graflow-tmp"))]
    assert len(list(directory.glob("%*.json"))) == len(ODD_IDS)  # none of them is a safe file name


async def test_file_store_watches_only_while_someone_waits(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    store = FileFeedbackStore(tmp_path)
    await store.create(ask())
    waiter = await started(store.wait("fb-1", timeout=10.0))
    assert len(asyncio.all_tasks() - before) == 2  # the waiter and the directory watcher
    await store.respond("fb-1", {"approved": True})
    await waiter
    for _ in range(100):  # the watcher's thread notices the stop within one step
        if asyncio.all_tasks() == before:
            break
        await asyncio.sleep(0.01)
    assert asyncio.all_tasks() == before
    await store.aclose()


async def test_file_store_honours_a_claim_its_claimant_did_not_publish(tmp_path: Path) -> None:
    async with FileFeedbackStore(tmp_path) as store:
        await store.create(ask())
        pending = (tmp_path / "fb-1.json").read_bytes()
        answer = await store.respond("fb-1", {"approved": True})
        (tmp_path / "fb-1.json").unlink()  # as if the claimant died before renaming into place
        (tmp_path / "fb-1.json").write_bytes(pending)
        request, response = await store.get("fb-1")
        assert (request.status, response) == ("answered", answer)
        assert [r.feedback_id for r in await store.list_pending()] == []
        with pytest.raises(FeedbackAlreadyAnsweredError):
            await store.respond("fb-1", {"approved": False})


async def test_file_store_lists_around_unreadable_records_and_reports_them_once(
    tmp_path: Path, log_capture: list[dict[str, Any]]
) -> None:
    async with FileFeedbackStore(tmp_path) as store:
        await store.create(ask("good-1", created_at=1.0))
        await store.create(ask("good-2", created_at=2.0))
        good = json.loads((tmp_path / "good-1.json").read_bytes())
        bad = {
            "garbage.json": b"\x00\xff not json",
            "truncated.json": (tmp_path / "good-1.json").read_bytes()[:40],
            "a-list.json": b"[1, 2]",
            "no-request.json": json.dumps({"status": "pending"}).encode(),
            "bad-type.json": json.dumps({**good, "request": {**good["request"], "feedback_type": "nope"}}).encode(),
            "deep.json": b"[" * 100_000 + b"]" * 100_000,
        }
        for name, data in bad.items():
            (tmp_path / name).write_bytes(data)
        for _ in range(2):
            listed = await store.list_pending()
            assert [r.feedback_id for r in listed] == ["good-1", "good-2"]
            assert list(listed.skipped) == sorted(bad)
        warnings = [e for e in log_capture if e["event"] == "skipped an unreadable feedback record"]
        assert sorted(Path(e["path"]).name for e in warnings) == sorted(bad)  # once each, not per listing
        assert "nope" not in json.dumps(warnings)  # what is wrong, never what is there
        (tmp_path / "garbage.json").write_bytes(b"still not json, but changed")
        await store.list()
        assert len([e for e in log_capture if e["event"] == "skipped an unreadable feedback record"]) == len(bad) + 1
        for name in bad:
            (tmp_path / name).unlink()
        listed = await store.list()
        assert len(listed) == 2 and listed.skipped == ()


async def test_redis_store_keys_expire_and_a_given_client_stays_open(redis_url: str) -> None:
    """A client that decodes responses lends its settings to a twin that does not."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)  # the store copes with str replies
    try:
        async with RedisFeedbackStore(client=client, namespace="exp", ttl=60) as store:
            await store.create(ask())
            await store.set_suspension("run-1", {"checkpoint": "x"})
            waiter = await started(store.wait("fb-1", timeout=10.0))
            await store.respond("fb-1", {"approved": True})
            assert (await asyncio.wait_for(waiter, 2.0)).approved is True
            assert await store.get_suspension("run-1") == {"checkpoint": "x"}
            keys = sorted(await client.keys("exp:feedback:*"))
            assert keys == ["exp:feedback:index", "exp:feedback:request:fb-1", "exp:feedback:suspension:run-1"]
            for key in keys:
                assert 0 < await client.ttl(key) <= 60
        assert await client.ping()  # a client given to the store is not closed by it
    finally:
        await client.aclose()


async def test_redis_errors_become_transport_errors_naming_the_server() -> None:
    server = RedisServer()  # never started: nothing listens on its port
    try:
        async with RedisFeedbackStore(f"redis://user:secret@127.0.0.1:{server.port}/0") as store:
            calls = [
                lambda: store.get("fb-1"),
                lambda: store.create(ask()),
                lambda: store.wait("fb-1", timeout=1.0),
                lambda: store.list_runs(),
                lambda: store.set_suspension("r", None),
            ]
            for call in calls:
                started_at = time.perf_counter()
                with pytest.raises(TransportError, match=f"127.0.0.1:{server.port}") as caught:
                    await call()
                assert "secret" not in str(caught.value)
                assert time.perf_counter() - started_at < 2.0  # the first contact fails fast
    finally:
        server.cleanup()


async def subscribed(url: str, channel: str) -> bool:
    async with Redis.from_url(url) as probe:
        [(_, count)] = await probe.pubsub_numsub(channel)
    return count > 0


async def test_a_redis_waiter_survives_a_server_restart() -> None:
    server = RedisServer(appendonly=True)
    server.start()
    try:
        async with RedisFeedbackStore(server.url) as waiting, RedisFeedbackStore(server.url) as answering:
            await waiting.create(ask())
            waiter = await started(waiting.wait("fb-1", timeout=30.0))
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.3)  # an outage window the waiter must sit through
            assert not waiter.done()
            await asyncio.to_thread(server.start)
            await wait_for(lambda: subscribed(server.url, waiting.channel), 10, "the listener to subscribe again")
            await answering.respond("fb-1", {"approved": True})  # reaches `waiting` through pub/sub only
            assert (await asyncio.wait_for(waiter, 5.0)).approved is True
    finally:
        server.cleanup()


async def test_a_redis_index_of_another_type_lists_nothing_and_is_named(
    redis_url: str, client: Any, log_capture: list[dict[str, Any]]
) -> None:
    async with RedisFeedbackStore(redis_url, namespace="idx") as store:
        await store.create(ask())
        await store.save_run(record("run-1"))
        await client.delete("idx:feedback:index", "idx:runs:index")
        await client.set("idx:feedback:index", "not a sorted set")
        await client.rpush("idx:runs:index", "not a sorted set")
        listed = await store.list()
        assert list(listed) == [] and listed.skipped == ("idx:feedback:index",)
        runs, cursor = await store.list_runs()
        assert list(runs) == [] and runs.skipped == ("idx:runs:index",) and cursor is None
        await store.save_run(record("run-2"))  # kept, and readable, though it cannot be listed
        kept = await store.get_run("run-2")
        assert kept is not None and kept["run_id"] == "run-2"
        with pytest.raises(FeedbackCorruptError):
            await store.create(ask("fb-2"))  # nothing is written beside an index it cannot keep
        assert not await client.exists("idx:feedback:request:fb-2")
        assert (await store.get("fb-1"))[0].status == "pending"  # the records themselves are fine
    keys = sorted(e["key"] for e in log_capture if e["event"].startswith("skipped an unreadable"))
    assert keys == ["idx:feedback:index", "idx:runs:index"]


async def test_redis_scripts_are_sent_by_digest_and_loaded_again_when_the_server_forgot_them(
    redis_url: str, client: Any
) -> None:
    async with RedisFeedbackStore(redis_url, namespace="lua") as store:
        await store.create(ask("fb-1"))
        await client.script_flush()  # as a restarted server would have
        await store.create(ask("fb-2"))
        await store.respond("fb-2", {"approved": True})
        await client.script_flush()
        await store.cancel("fb-1")
        assert [r.status for r in await store.list()] == ["cancelled", "answered"]


async def test_a_redis_store_on_a_transports_connection_shares_it_and_leaves_it_open(redis_url: str) -> None:
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(redis_url, namespace="shared") as transport:
        async with RedisFeedbackStore(connection=transport.conn, namespace="shared") as store:
            assert store.conn is transport.conn and store.conn.hot_path == "lean"
            await store.create(ask())
            waiter = await started(store.wait("fb-1", timeout=10.0))
            await store.respond("fb-1", {"approved": True})
            assert (await asyncio.wait_for(waiter, 2.0)).approved is True
        assert not transport.closed
        await transport.send("q", [{"n": 1}])  # the transport still works
