"""One conformance suite for the feedback stores: memory, file and Redis (a real server).

Plus what only shared stores promise: an answer given in another process wakes a
waiter here at once (no polling), and of racing answers exactly one wins.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from feedback_backends import Backend, make_backend
from redis import exceptions as redis_errors
from redis_server import RedisServer

from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackCancelledError,
    FeedbackNotFoundError,
    FeedbackTimeoutError,
    FeedbackValidationError,
    TransportError,
)
from graflow_async.feedback import (
    FeedbackRequest,
    FeedbackResponse,
    FeedbackStore,
    FeedbackType,
    FileFeedbackStore,
    RedisFeedbackStore,
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


def ask(
    feedback_id: str = "fb-1", run_id: str = "run-1", kind: str = "approval", *,
    options: list[str] | None = None, created_at: float | None = None, prompt: str = "deploy?",
    metadata: dict[str, Any] | None = None,
) -> FeedbackRequest:
    return FeedbackRequest(
        feedback_id, run_id, "task-a", FeedbackType(kind), prompt, options,
        {"env": "prod"} if metadata is None else metadata, 30.0,
        **({} if created_at is None else {"created_at": created_at}),
    )


async def started(coro: Any) -> asyncio.Task[Any]:
    """Run `coro` as a task and give it time to start waiting."""
    waiter = asyncio.create_task(coro)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    return waiter


# -- the contract ---------------------------------------------------------------------


async def test_create_is_idempotent_by_id(store: FeedbackStore) -> None:
    first = await store.create(ask(prompt="deploy v1?"))
    again = await store.create(ask(prompt="something else?"))
    assert again.prompt == first.prompt == "deploy v1?"
    assert again.created_at == first.created_at
    request, response = await store.get("fb-1")
    assert request.to_dict() == first.to_dict()
    assert (request.feedback_type, request.metadata, request.status, response) == (
        FeedbackType.APPROVAL, {"env": "prod"}, "pending", None
    )


async def test_list_filters_by_run_and_status_oldest_first(store: FeedbackStore) -> None:
    for feedback_id, run_id, created_at in [("c", "r1", 30.0), ("a", "r1", 10.0), ("d", "r2", 40.0),
                                            ("b", "r2", 20.0), ("e", "r1", 50.0)]:
        await store.create(ask(feedback_id, run_id, created_at=time.time() - 1000 + created_at))
    await store.respond("c", {"approved": True})
    await store.cancel("d")

    def ids(requests: list[FeedbackRequest]) -> list[str]:
        return [r.feedback_id for r in requests]

    assert ids(await store.list()) == ["a", "b", "c", "d", "e"]
    assert ids(await store.list_pending()) == ["a", "b", "e"]
    assert ids(await store.list_pending("r1")) == ["a", "e"]
    assert ids(await store.list("r1")) == ["a", "c", "e"]
    assert ids(await store.list(status="answered")) == ["c"]
    assert ids(await store.list("r2", "cancelled")) == ["d"]
    assert ids(await store.list("r3")) == []
    assert [r.status for r in await store.list()] == ["pending", "pending", "answered", "cancelled", "pending"]


async def test_unknown_ids_raise_not_found(store: FeedbackStore) -> None:
    with pytest.raises(FeedbackNotFoundError):
        await store.get("nope")
    with pytest.raises(FeedbackNotFoundError):
        await store.respond("nope", {"approved": True})
    with pytest.raises(FeedbackNotFoundError):
        await store.cancel("nope")
    with pytest.raises(FeedbackNotFoundError):
        await store.wait("nope", timeout=1.0)


INVALID = [
    ("approval", None, {"approved": "yes"}, "approved"),
    ("approval", None, {}, "approved"),
    ("text", None, {"text": 3}, "text"),
    ("text", None, {"approved": True}, "text"),
    ("selection", ["a", "b"], {"selected": "c"}, "selected"),
    ("selection", ["a", "b"], {"selected_multiple": ["a"]}, "selected"),
    ("multi_selection", ["a", "b"], {"selected_multiple": ["a", "z"]}, "selected_multiple"),
    ("multi_selection", ["a", "b"], {"selected_multiple": "a"}, "selected_multiple"),
    ("custom", None, {"custom_data": [1, 2]}, "custom_data"),
    ("custom", None, {"custom_data": {"k": 1}, "bogus": 1}, "bogus"),
]
VALID: dict[str, dict[str, Any]] = {
    "approval": {"approved": False, "reason": "not today"},
    "text": {"text": "LGTM"},
    "selection": {"selected": "b"},
    "multi_selection": {"selected_multiple": ["a", "b"]},
    "custom": {"custom_data": {"k": [1, {"x": None}]}},
}


@pytest.mark.parametrize(("kind", "options", "answer", "field"), INVALID)
async def test_respond_validates_against_the_type(
    store: FeedbackStore, kind: str, options: list[str] | None, answer: dict[str, Any], field: str
) -> None:
    await store.create(ask(kind=kind, options=options))
    with pytest.raises(FeedbackValidationError) as caught:
        await store.respond("fb-1", answer)
    assert caught.value.field == field
    assert (await store.get("fb-1"))[0].status == "pending"  # an invalid answer claims nothing
    response = await store.respond("fb-1", {**VALID[kind], "responded_by": "ann"})
    assert (await store.get("fb-1"))[1] == response
    for name, value in VALID[kind].items():
        assert getattr(response, name) == value


async def test_respond_accepts_a_response_object(store: FeedbackStore) -> None:
    await store.create(ask())
    given = FeedbackResponse("ignored", approved=True, responded_by="bob")
    response = await store.respond("fb-1", given)
    assert (response.feedback_id, response.approved, response.responded_by) == ("fb-1", True, "bob")
    request, stored = await store.get("fb-1")
    assert (request.status, stored) == ("answered", response)


async def test_answered_and_cancelled_requests_cannot_be_settled_again(store: FeedbackStore) -> None:
    await store.create(ask("answered"))
    await store.create(ask("cancelled"))
    await store.respond("answered", {"approved": True})
    await store.cancel("cancelled")
    for feedback_id in ("answered", "cancelled"):
        with pytest.raises(FeedbackAlreadyAnsweredError):
            await store.respond(feedback_id, {"approved": False})
        with pytest.raises(FeedbackAlreadyAnsweredError):
            await store.cancel(feedback_id)
    assert (await store.get("answered"))[1].approved is True  # type: ignore[union-attr]
    assert (await store.get("cancelled"))[1] is None


async def test_cancel_wakes_the_waiter_with_cancelled_error(store: FeedbackStore) -> None:
    await store.create(ask())
    waiter = await started(store.wait("fb-1", timeout=10.0))
    await store.cancel("fb-1")
    with pytest.raises(FeedbackCancelledError):
        await asyncio.wait_for(waiter, 2.0)
    with pytest.raises(FeedbackCancelledError):
        await store.wait("fb-1", timeout=1.0)  # already cancelled: at once


async def test_wait_returns_an_answer_given_later_or_already_there(store: FeedbackStore) -> None:
    await store.create(ask())
    waiter = await started(store.wait("fb-1", timeout=10.0))
    given = await store.respond("fb-1", {"approved": True})
    assert await asyncio.wait_for(waiter, 2.0) == given
    started_at = time.perf_counter()
    assert await store.wait("fb-1", timeout=10.0) == given
    assert time.perf_counter() - started_at < 0.5


async def test_several_waiters_on_one_request_all_wake(store: FeedbackStore) -> None:
    await store.create(ask())
    waiters = [await started(store.wait("fb-1", timeout=10.0)) for _ in range(3)]
    given = await store.respond("fb-1", {"approved": True})
    assert await asyncio.wait_for(asyncio.gather(*waiters), 2.0) == [given] * 3


async def test_wait_times_out(store: FeedbackStore) -> None:
    await store.create(ask())
    started_at = time.perf_counter()
    with pytest.raises(FeedbackTimeoutError):
        await store.wait("fb-1", timeout=0.1)
    assert 0.1 <= time.perf_counter() - started_at < 1.0
    assert (await store.get("fb-1"))[0].status == "pending"  # still answerable
    await store.respond("fb-1", {"approved": True})


async def test_in_process_wake_up_is_under_50ms(store: FeedbackStore) -> None:
    for round_ in range(3):
        feedback_id = f"fb-{round_}"
        await store.create(ask(feedback_id))

        async def wait_and_stamp(feedback_id: str = feedback_id) -> float:
            await store.wait(feedback_id, timeout=10.0)
            return time.perf_counter()

        waiter = await started(wait_and_stamp())
        answered_at = time.perf_counter()
        await store.respond(feedback_id, {"approved": True})
        woke_at = await asyncio.wait_for(waiter, 2.0)
        assert woke_at - answered_at < 0.05


@pytest.mark.parametrize(("settle", "settled_status"), [("respond", "answered"), ("cancel", "cancelled")])
async def test_requests_handed_out_keep_their_status_when_settled(
    store: FeedbackStore, settle: str, settled_status: str
) -> None:
    created = await store.create(ask())
    again = await store.create(ask())
    got, _ = await store.get("fb-1")
    [listed] = await store.list_pending()
    if settle == "respond":
        await store.respond("fb-1", {"approved": True})
    else:
        await store.cancel("fb-1")
    assert [r.status for r in (created, again, got, listed)] == ["pending"] * 4
    assert (await store.get("fb-1"))[0].status == settled_status
    assert [r.status for r in await store.list()] == [settled_status]


async def test_requests_handed_out_are_frozen(store: FeedbackStore) -> None:
    created = await store.create(ask())
    got, _ = await store.get("fb-1")
    [listed] = await store.list()
    for request in (created, got, listed):
        with pytest.raises(FrozenInstanceError):
            request.status = "answered"  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            request.metadata = {}  # type: ignore[misc]
    assert (await store.get("fb-1"))[0].status == "pending"


async def test_changing_what_went_in_or_came_out_does_not_change_the_store(store: FeedbackStore) -> None:
    given = ask(kind="selection", options=["a", "b"], metadata={"env": "prod", "tags": ["x"]})
    created = await store.create(given)
    given.metadata["env"] = "dev"
    assert given.options is not None
    given.options.append("c")
    created.metadata["tags"].append("y")
    got, _ = await store.get("fb-1")
    got.metadata["extra"] = 1
    [listed] = await store.list_pending()
    listed.metadata.clear()
    request, _ = await store.get("fb-1")
    assert (request.options, request.metadata) == (["a", "b"], {"env": "prod", "tags": ["x"]})
    with pytest.raises(FeedbackValidationError):
        await store.respond("fb-1", {"selected": "c"})  # an option added by a caller only


async def test_changing_an_answer_given_or_returned_does_not_change_the_store(store: FeedbackStore) -> None:
    await store.create(ask(kind="custom"))
    given: dict[str, Any] = {"custom_data": {"replicas": [1]}}
    returned = await store.respond("fb-1", given)
    given["custom_data"]["replicas"].append(2)
    assert returned.custom_data is not None
    returned.custom_data["other"] = True
    _, stored = await store.get("fb-1")
    assert stored is not None and stored.custom_data == {"replicas": [1]}
    stored.custom_data["replicas"].clear()
    _, again = await store.get("fb-1")
    assert again is not None and again.custom_data == {"replicas": [1]}


ODD_IDS = ["../escape", "a/b\\c", "CON", "con.json", "Upper", "spaces and ünïcödé", ".hidden", "x" * 300, "a:b:c"]


async def test_any_string_is_a_usable_id(store: FeedbackStore) -> None:
    for index, feedback_id in enumerate(ODD_IDS):
        await store.create(ask(feedback_id, created_at=1000.0 + index))
    assert [r.feedback_id for r in await store.list()] == ODD_IDS
    await store.create(ask("upper"))  # differs from "Upper" only by case
    waiter = await started(store.wait("../escape", timeout=10.0))
    await store.respond("../escape", {"approved": True})
    assert (await asyncio.wait_for(waiter, 2.0)).feedback_id == "../escape"
    assert (await store.get("upper"))[0].status == "pending"
    assert (await store.get("Upper"))[0].status == "pending"


async def test_suspensions_round_trip_and_delete(store: FeedbackStore) -> None:
    assert await store.get_suspension("run-1") is None
    record = {"checkpoint": "/tmp/ckpt/run-1/3.ckpt", "workflow": "deploy"}
    await store.set_suspension("run-1", record)
    await store.set_suspension("run/../2", {"checkpoint": "s3://b/k", "workflow": "other"})
    assert await store.get_suspension("run-1") == record
    await store.set_suspension("run-1", {**record, "checkpoint": "newer"})
    assert (await store.get_suspension("run-1")) == {**record, "checkpoint": "newer"}
    await store.set_suspension("run-1", None)
    assert await store.get_suspension("run-1") is None
    await store.set_suspension("run-1", None)  # deleting twice is fine
    assert await store.get_suspension("run/../2") == {"checkpoint": "s3://b/k", "workflow": "other"}


async def test_aclose_leaves_no_task_behind(backend: Backend) -> None:
    before = asyncio.all_tasks()
    store = backend.make()
    await store.create(ask("answered"))
    await store.create(ask("abandoned"))
    waiter = await started(store.wait("answered", timeout=10.0))
    abandoned = await started(store.wait("abandoned", timeout=10.0))
    await store.respond("answered", {"approved": True})
    await asyncio.wait_for(waiter, 2.0)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await store.aclose()
    assert asyncio.all_tasks() == before


# -- what only shared stores promise -------------------------------------------------

CHILD = """
import asyncio, json, sys, time
from graflow_async.feedback.file import FileFeedbackStore
from graflow_async.feedback.redis import RedisFeedbackStore

async def main(action, feedback_id, start_at):
    async with {store} as store:
        await asyncio.sleep(max(0.0, start_at - time.time()))
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


async def in_child(backend: Backend, action: str, feedback_id: str, name: str = "child",
                   start_at: float = 0.0) -> dict[str, Any]:
    """Run `action` on `feedback_id` through a store of another process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD.format(store=backend.child_expr), action, feedback_id, str(start_at), name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20.0)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_an_answer_from_another_process_wakes_the_waiter(shared_backend: Backend) -> None:
    async with shared_backend.make() as store:
        await store.create(ask())

        async def wait_and_stamp() -> tuple[FeedbackResponse, float]:
            return await store.wait("fb-1", timeout=30.0), time.time()

        waiter = await started(wait_and_stamp())
        child = await in_child(shared_backend, "respond", "fb-1")
        response, woke_at = await asyncio.wait_for(waiter, 5.0)
        assert (response.approved, response.responded_by) == (True, "child")
        # Far below the timeout: the waiter was woken, it did not poll or time out.
        assert woke_at - child["settled_at"] < 1.0


async def test_a_cancellation_from_another_process_wakes_the_waiter(shared_backend: Backend) -> None:
    async with shared_backend.make() as store:
        await store.create(ask())
        waiter = await started(store.wait("fb-1", timeout=30.0))
        child = await in_child(shared_backend, "cancel", "fb-1")
        with pytest.raises(FeedbackCancelledError):
            await asyncio.wait_for(waiter, 5.0)
        assert time.time() - child["settled_at"] < 1.0


async def test_of_two_stores_racing_to_answer_exactly_one_wins(shared_backend: Backend) -> None:
    async with shared_backend.make() as first, shared_backend.make() as second:
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


async def test_of_processes_racing_to_answer_exactly_one_wins(shared_backend: Backend) -> None:
    async with shared_backend.make() as store:
        await store.create(ask())
        start_at = time.time() + 1.0  # all children answer at the same moment
        results = await asyncio.gather(
            *(in_child(shared_backend, "respond", "fb-1", f"child-{i}", start_at) for i in range(3)),
            in_child(shared_backend, "cancel", "fb-1", "canceller", start_at),
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
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
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
            assert [r.feedback_id for r in await store.list_pending()] == ["good-1", "good-2"]
            assert store.unreadable == sorted(bad)
        warnings = [e for e in log_capture if e["event"] == "skipped an unreadable feedback record"]
        assert sorted(Path(e["path"]).name for e in warnings) == sorted(bad)  # once each, not per listing
        (tmp_path / "garbage.json").write_bytes(b"still not json, but changed")
        await store.list()
        assert len([e for e in log_capture if e["event"] == "skipped an unreadable feedback record"]) == len(bad) + 1
        for name in bad:
            (tmp_path / name).unlink()
        assert len(await store.list()) == 2
        assert store.unreadable == []


async def test_redis_store_keys_expire_and_a_given_client_stays_open(redis_url: str) -> None:
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
            for call in (store.get("fb-1"), store.create(ask()), store.wait("fb-1", timeout=1.0)):
                with pytest.raises(TransportError, match=f"127.0.0.1:{server.port}") as caught:
                    await call
                assert "secret" not in str(caught.value)
                assert isinstance(caught.value.__cause__, redis_errors.ConnectionError)
    finally:
        server.cleanup()


async def test_a_redis_waiter_survives_a_server_restart() -> None:
    server = RedisServer(appendonly=True)
    server.start()
    try:
        async with RedisFeedbackStore(server.url) as waiting, RedisFeedbackStore(server.url) as answering:
            await waiting.create(ask())
            waiter = await started(waiting.wait("fb-1", timeout=30.0))
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.3)
            assert not waiter.done()
            await asyncio.to_thread(server.start)
            await asyncio.sleep(0.3)  # let the listener subscribe again
            await answering.respond("fb-1", {"approved": True})  # reaches `waiting` through pub/sub only
            assert (await asyncio.wait_for(waiter, 5.0)).approved is True
    finally:
        server.cleanup()
