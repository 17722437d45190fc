"""Conformance kits for the feedback contracts (`feedback.contracts`).

Subclass a suite in a test module and give it a ``store`` fixture that yields a fresh,
open store (an empty one for each test); pytest then runs every check against it:

    class TestMyStore(FeedbackRequestsSuite, SuspensionsSuite):
        @pytest.fixture
        async def store(self):
            async with MyStore(...) as s:
                yield s

`FeedbackRequestsSuite` covers every method of `FeedbackRequests` (`list_pending`
included), the errors each raises, that nothing handed in or out is shared with the
store, and that a waiter is woken within 50 ms of an answer in its process.
`SuspensionsSuite` covers `Suspensions`. What only a backend shared by processes
promises (answers from elsewhere) and what a store does with records corrupted behind
its back (`conformance_corrupt`) are checked apart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackCancelledError,
    FeedbackNotFoundError,
    FeedbackTimeoutError,
    FeedbackValidationError,
)
from graflow_async.feedback.contracts import FeedbackRequests, Suspensions
from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse, FeedbackType
from graflow_async.feedback.stored import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, SuspensionError
from graflow_async.records.corrupt import Listing


def ask(
    feedback_id: str = "fb-1",
    run_id: str = "run-1",
    kind: str = "approval",
    *,
    options: list[str] | None = None,
    created_at: float | None = None,
    prompt: str = "deploy?",
    metadata: dict[str, Any] | None = None,
) -> FeedbackRequest:
    """A request to store (approval by default)."""
    request = FeedbackRequest(
        feedback_id,
        run_id,
        "task-a",
        FeedbackType(kind),
        prompt,
        options,
        {"env": "prod"} if metadata is None else metadata,
        30.0,
    )
    return request if created_at is None else replace(request, created_at=created_at)


async def started(coro: Any) -> asyncio.Task[Any]:
    """Run `coro` as a task and give it time to start waiting."""
    waiter = asyncio.create_task(coro)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    return waiter


def ids(requests: list[FeedbackRequest]) -> list[str]:
    return [r.feedback_id for r in requests]


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
ODD_IDS = ["../escape", "a/b\\c", "CON", "con.json", "Upper", "spaces and ünïcödé", ".hidden", "x" * 300, "a:b:c"]


class FeedbackRequestsSuite:
    """The behaviour every `FeedbackRequests` must show. Needs a ``store`` fixture."""

    async def test_create_is_idempotent_by_id(self, store: FeedbackRequests) -> None:
        first = await store.create(ask(prompt="deploy v1?"))
        again = await store.create(ask(prompt="something else?"))
        assert again.prompt == first.prompt == "deploy v1?"
        assert again.created_at == first.created_at
        request, response = await store.get("fb-1")
        assert request.to_dict() == first.to_dict()
        assert (request.feedback_type, request.metadata, request.status, response) == (
            FeedbackType.APPROVAL,
            {"env": "prod"},
            "pending",
            None,
        )

    async def test_list_filters_by_run_and_status_oldest_first(self, store: FeedbackRequests) -> None:
        for feedback_id, run_id, created_at in [
            ("c", "r1", 30.0),
            ("a", "r1", 10.0),
            ("d", "r2", 40.0),
            ("b", "r2", 20.0),
            ("e", "r1", 50.0),
        ]:
            await store.create(ask(feedback_id, run_id, created_at=time.time() - 1000 + created_at))
        await store.respond("c", {"approved": True})
        await store.cancel("d")
        assert ids(await store.list()) == ["a", "b", "c", "d", "e"]
        assert ids(await store.list_pending()) == ["a", "b", "e"]
        assert ids(await store.list_pending("r1")) == ["a", "e"]
        assert ids(await store.list("r1")) == ["a", "c", "e"]
        assert ids(await store.list(status="answered")) == ["c"]
        assert ids(await store.list("r2", "cancelled")) == ["d"]
        assert ids(await store.list("r3")) == []
        listed = await store.list()
        assert [r.status for r in listed] == ["pending", "pending", "answered", "cancelled", "pending"]
        assert isinstance(listed, Listing) and listed.skipped == () and listed.skipped_count == 0

    async def test_unknown_ids_raise_not_found(self, store: FeedbackRequests) -> None:
        with pytest.raises(FeedbackNotFoundError):
            await store.get("nope")
        with pytest.raises(FeedbackNotFoundError):
            await store.respond("nope", {"approved": True})
        with pytest.raises(FeedbackNotFoundError):
            await store.cancel("nope")
        with pytest.raises(FeedbackNotFoundError):
            await store.wait("nope", timeout=1.0)

    @pytest.mark.parametrize(("kind", "options", "answer", "field"), INVALID)
    async def test_respond_validates_against_the_type(
        self, store: FeedbackRequests, kind: str, options: list[str] | None, answer: dict[str, Any], field: str
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

    async def test_respond_accepts_a_response_object(self, store: FeedbackRequests) -> None:
        await store.create(ask())
        given = FeedbackResponse("ignored", approved=True, responded_by="bob")
        response = await store.respond("fb-1", given)
        assert (response.feedback_id, response.approved, response.responded_by) == ("fb-1", True, "bob")
        request, stored = await store.get("fb-1")
        assert (request.status, stored) == ("answered", response)

    async def test_what_cannot_be_stored_is_refused_and_nothing_is_stored(self, store: FeedbackRequests) -> None:
        with pytest.raises(FeedbackValidationError):
            await store.create(ask("big", metadata={"blob": "x" * MAX_REQUEST_BYTES}))
        with pytest.raises(FeedbackValidationError):
            await store.create(ask("odd", metadata={"when": {1, 2}}))  # not JSON
        with pytest.raises(FeedbackNotFoundError):
            await store.get("big")
        assert ids(await store.list()) == []
        await store.create(ask(kind="custom"))
        with pytest.raises(FeedbackValidationError):
            await store.respond("fb-1", {"custom_data": {"blob": "x" * MAX_RESPONSE_BYTES}})
        assert (await store.get("fb-1"))[0].status == "pending"

    async def test_answered_and_cancelled_requests_cannot_be_settled_again(self, store: FeedbackRequests) -> None:
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

    async def test_cancel_wakes_the_waiter_with_cancelled_error(self, store: FeedbackRequests) -> None:
        await store.create(ask())
        waiter = await started(store.wait("fb-1", timeout=10.0))
        await store.cancel("fb-1")
        with pytest.raises(FeedbackCancelledError):
            await asyncio.wait_for(waiter, 2.0)
        with pytest.raises(FeedbackCancelledError):
            await store.wait("fb-1", timeout=1.0)  # already cancelled: at once

    async def test_wait_returns_an_answer_given_later_or_already_there(self, store: FeedbackRequests) -> None:
        await store.create(ask())
        waiter = await started(store.wait("fb-1", timeout=10.0))
        given = await store.respond("fb-1", {"approved": True})
        assert await asyncio.wait_for(waiter, 2.0) == given
        started_at = time.perf_counter()
        assert await store.wait("fb-1", timeout=10.0) == given
        assert time.perf_counter() - started_at < 0.5

    async def test_several_waiters_on_one_request_all_wake(self, store: FeedbackRequests) -> None:
        await store.create(ask())
        waiters = [await started(store.wait("fb-1", timeout=10.0)) for _ in range(3)]
        given = await store.respond("fb-1", {"approved": True})
        assert await asyncio.wait_for(asyncio.gather(*waiters), 2.0) == [given] * 3

    async def test_wait_times_out(self, store: FeedbackRequests) -> None:
        await store.create(ask())
        started_at = time.perf_counter()
        with pytest.raises(FeedbackTimeoutError):
            await store.wait("fb-1", timeout=0.1)
        assert 0.1 <= time.perf_counter() - started_at < 1.0
        assert (await store.get("fb-1"))[0].status == "pending"  # still answerable
        await store.respond("fb-1", {"approved": True})

    async def test_in_process_wake_up_is_under_50ms(self, store: FeedbackRequests) -> None:
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
        self, store: FeedbackRequests, settle: str, settled_status: str
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

    async def test_requests_handed_out_are_frozen(self, store: FeedbackRequests) -> None:
        created = await store.create(ask())
        got, _ = await store.get("fb-1")
        [listed] = await store.list()
        for request in (created, got, listed):
            with pytest.raises(FrozenInstanceError):
                request.status = "answered"  # type: ignore[misc]
            with pytest.raises(FrozenInstanceError):
                request.metadata = {}  # type: ignore[misc]
        assert (await store.get("fb-1"))[0].status == "pending"

    async def test_changing_what_went_in_or_came_out_does_not_change_the_store(self, store: FeedbackRequests) -> None:
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

    async def test_changing_an_answer_given_or_returned_does_not_change_the_store(
        self, store: FeedbackRequests
    ) -> None:
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

    async def test_any_string_is_a_usable_id(self, store: FeedbackRequests) -> None:
        for index, feedback_id in enumerate(ODD_IDS):
            await store.create(ask(feedback_id, created_at=1000.0 + index))
        assert ids(await store.list()) == ODD_IDS
        await store.create(ask("upper"))  # differs from "Upper" only by case
        waiter = await started(store.wait("../escape", timeout=10.0))
        await store.respond("../escape", {"approved": True})
        assert (await asyncio.wait_for(waiter, 2.0)).feedback_id == "../escape"
        assert (await store.get("upper"))[0].status == "pending"
        assert (await store.get("Upper"))[0].status == "pending"

    async def test_aclose_leaves_no_task_behind_and_may_be_called_again(self, store: FeedbackRequests) -> None:
        before = asyncio.all_tasks()
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
        await store.aclose()


class SuspensionsSuite:
    """The behaviour every `Suspensions` must show. Needs a ``store`` fixture."""

    async def test_suspensions_round_trip_and_delete(self, store: Suspensions) -> None:
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

    async def test_a_suspension_handed_out_is_a_copy(self, store: Suspensions) -> None:
        record: dict[str, Any] = {"checkpoint": "c", "workflow": "w", "extra": {"n": [1]}}
        await store.set_suspension("run-1", record)
        record["extra"]["n"].append(2)
        got = await store.get_suspension("run-1")
        assert got == {"checkpoint": "c", "workflow": "w", "extra": {"n": [1]}}
        assert got is not None
        got["checkpoint"] = "changed"
        assert (await store.get_suspension("run-1") or {})["checkpoint"] == "c"

    @pytest.mark.parametrize(
        "record",
        [
            ["c"],
            {"checkpoint": 3},
            {"workflow": ["w"]},
            {1: "x"},
            {"checkpoint": "c", "blob": "x" * 70_000},
            {"checkpoint": "c", "when": {1, 2}},
        ],
        ids=["a-list", "checkpoint-number", "workflow-list", "number-key", "too-large", "not-json"],
    )
    async def test_malformed_suspensions_are_refused(self, store: Suspensions, record: Any) -> None:
        await store.set_suspension("run-1", {"checkpoint": "kept"})
        with pytest.raises(SuspensionError):
            await store.set_suspension("run-1", record)
        assert await store.get_suspension("run-1") == {"checkpoint": "kept"}
