"""Human in the loop in a run: answers within the timeout, suspension, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from answers import answer_when_asked

from graflow_async import (
    FeedbackResponse,
    FeedbackType,
    ParallelGroupError,
    TaskFailedError,
    resume,
    run,
    task,
    workflow,
)
from graflow_async.exceptions import FeedbackCancelledError, FeedbackValidationError
from graflow_async.feedback import FeedbackStore, FileFeedbackStore, MemoryFeedbackStore
from graflow_async.feedback.hitl import feedback_id


def approval_workflow(calls: dict[str, int], timeout: float = 5.0):
    @task
    async def build() -> str:
        calls["build"] = calls.get("build", 0) + 1
        return "v1.2"

    @task(inject_context=True)
    async def approve(context, build: str) -> bool:
        calls["approve"] = calls.get("approve", 0) + 1
        return await context.request_approval(f"deploy {build}?", timeout=timeout, metadata={"env": "prod"})

    @task
    async def smoke_tests() -> str:
        await asyncio.sleep(0.2)  # a sibling still running while the approval is asked
        return "green"

    @task
    async def deploy(approve: bool, smoke_tests: str) -> str:
        calls["deploy"] = calls.get("deploy", 0) + 1
        return f"deployed={approve} tests={smoke_tests}"

    with workflow("deploy") as wf:
        build >> (approve | smoke_tests) >> deploy
    return wf


async def test_an_answer_within_the_timeout_is_returned(tmp_path: Path) -> None:
    store, calls = MemoryFeedbackStore(), {}
    answering = asyncio.create_task(answer_when_asked(store, {"approved": True, "responded_by": "ann"}))
    result = await run(approval_workflow(calls), feedback_store=store, checkpoint_store=tmp_path)
    [fid] = await answering
    assert result.status == "completed"
    assert result.output == "deployed=True tests=green"
    request, response = await store.get(fid)
    assert request.prompt == "deploy v1.2?" and request.metadata == {"env": "prod"}
    assert request.feedback_type is FeedbackType.APPROVAL and request.task_id == "approve"
    assert response is not None and response.responded_by == "ann"
    assert fid == feedback_id(result.run_id, "approve", 1)  # derived, not random
    assert not list(tmp_path.iterdir())  # nothing suspended: no checkpoint written


async def test_a_timeout_inside_a_group_suspends_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    store, calls = MemoryFeedbackStore(), {}
    wf = approval_workflow(calls, timeout=0.05)
    events: list[str] = []
    result = await run(wf, feedback_store=store, checkpoint_store=tmp_path, on_event=lambda e: events.append(e.kind))
    assert result.status == "suspended"
    assert result.results == {"build": "v1.2", "smoke_tests": "green"}  # the sibling finished
    assert "deploy" not in result.results and calls.get("deploy") is None  # the group did not pass
    assert result.checkpoint is not None and Path(result.checkpoint).is_file()
    [pending] = result.pending_feedback
    assert pending.prompt == "deploy v1.2?" and pending.status == "pending"
    assert events[-3:] == ["checkpoint_saved", "run_suspended", "run_completed"] or "run_suspended" in events
    assert await store.get_suspension(result.run_id) == {"checkpoint": result.checkpoint, "workflow": "deploy"}

    await store.respond(pending.feedback_id, {"approved": False, "reason": "freeze"})
    resumed = await resume(result.checkpoint, workflow=wf, feedback_store=store)
    assert resumed.status == "completed" and resumed.run_id == result.run_id
    assert resumed.output == "deployed=False tests=green"
    assert calls == {"build": 1, "approve": 2, "deploy": 1}  # build not re-run; approve asked again
    assert len(await store.list(result.run_id)) == 1  # the same request, answered at once


@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_the_pending_feedback_a_run_returned_does_not_change_when_answered(kind: str, tmp_path: Path) -> None:
    store: FeedbackStore = MemoryFeedbackStore() if kind == "memory" else FileFeedbackStore(tmp_path / "feedback")
    result = await run(approval_workflow({}, timeout=0.05), feedback_store=store, checkpoint_store=tmp_path / "ckpt")
    assert result.status == "suspended"
    [pending] = result.pending_feedback
    assert pending.status == "pending"
    pending.metadata["env"] = "staging"  # the caller's copy: the store's record stays as asked

    await store.respond(pending.feedback_id, {"approved": True})
    assert result.pending_feedback[0].status == "pending"  # what the run returned is a record of then
    request, response = await store.get(pending.feedback_id)
    assert request.status == "answered" and response is not None and response.approved is True
    assert request.metadata == {"env": "prod"}
    await store.aclose()


async def test_resume_without_an_answer_waits_again(tmp_path: Path) -> None:
    store, calls = MemoryFeedbackStore(), {}
    wf = approval_workflow(calls, timeout=0.05)
    first = await run(wf, feedback_store=store, checkpoint_store=tmp_path)
    assert first.checkpoint is not None
    second = await resume(first.checkpoint, workflow=wf, feedback_store=store)
    assert second.status == "suspended"
    assert [r.feedback_id for r in second.pending_feedback] == [r.feedback_id for r in first.pending_feedback]
    answering = asyncio.create_task(answer_when_asked(store, {"approved": True}))
    assert second.checkpoint is not None
    third = await resume(second.checkpoint, workflow=wf, feedback_store=store)
    await answering
    assert third.output == "deployed=True tests=green"


async def test_a_cancelled_request_fails_the_waiting_task(tmp_path: Path) -> None:
    store = MemoryFeedbackStore()

    async def cancel_when_asked() -> None:
        while not (pending := await store.list_pending()):
            await asyncio.sleep(0.005)
        await store.cancel(pending[0].feedback_id)

    canceller = asyncio.create_task(cancel_when_asked())
    with pytest.raises(ParallelGroupError) as info:  # approve sits in a strict group
        await run(approval_workflow({}), feedback_store=store, checkpoint_store=tmp_path)
    await canceller
    [(task_id, error)] = info.value.failed_tasks
    assert task_id == "approve" and isinstance(error, FeedbackCancelledError)

    @task(inject_context=True)
    async def alone(context) -> bool:
        return await context.request_approval("go?", timeout=5)

    with workflow("alone") as wf:
        wf.add(alone)
    canceller = asyncio.create_task(cancel_when_asked())
    with pytest.raises(TaskFailedError) as failed:
        await run(wf, feedback_store=store, checkpoint_store=tmp_path)
    await canceller
    assert failed.value.task_id == "alone" and isinstance(failed.value.__cause__, FeedbackCancelledError)


@pytest.mark.parametrize(
    ("kind", "options", "answer", "expected"),
    [
        ("text", None, {"text": "looks fine"}, "looks fine"),
        ("selection", ["blue", "green"], {"selected": "green"}, "green"),
        ("multi_selection", ["a", "b", "c"], {"selected_multiple": ["a", "c"]}, ["a", "c"]),
        ("custom", None, {"custom_data": {"replicas": 3}}, {"replicas": 3}),
    ],
)
async def test_every_feedback_type_returns_its_answer(kind, options, answer, expected, tmp_path: Path) -> None:
    store = MemoryFeedbackStore()

    @task(inject_context=True)
    async def ask(context) -> object:
        response = await context.request_feedback(kind, "question?", options=options, timeout=5)
        assert isinstance(response, FeedbackResponse)
        return {
            "text": response.text,
            "selection": response.selected,
            "multi_selection": response.selected_multiple,
            "custom": response.custom_data,
        }[kind]

    with workflow("ask") as wf:
        wf.add(ask)
    answering = asyncio.create_task(answer_when_asked(store, answer))
    result = await run(wf, feedback_store=store, checkpoint_store=tmp_path)
    await answering
    assert result.output == expected


async def test_shorthands_and_bad_requests(tmp_path: Path) -> None:
    store = MemoryFeedbackStore()

    @task(inject_context=True)
    async def ask(context) -> tuple:
        text = await context.request_text("name?", timeout=5)
        pick = await context.request_selection("colour?", ["red", "blue"], timeout=5)
        with pytest.raises(FeedbackValidationError, match="options"):
            await context.request_feedback("selection", "no options", timeout=5)
        with pytest.raises(FeedbackValidationError, match="unknown feedback type"):
            await context.request_feedback("poll", "?", timeout=5)
        return text, pick

    with workflow("ask") as wf:
        wf.add(ask)

    async def answer_both() -> None:
        for answer in ({"text": "Ada"}, {"selected": "blue"}):
            while not (pending := await store.list_pending()):
                await asyncio.sleep(0.005)
            await store.respond(pending[0].feedback_id, answer)

    answering = asyncio.create_task(answer_both())
    result = await run(wf, feedback_store=store, checkpoint_store=tmp_path)
    await answering
    assert result.output == ("Ada", "blue")


async def test_a_task_may_catch_the_timeout_and_carry_on(tmp_path: Path) -> None:
    from graflow_async.exceptions import FeedbackTimeoutError

    @task(inject_context=True)
    async def ask(context) -> str:
        try:
            return (await context.request_feedback("text", "anyone?", timeout=0.02)).text or ""
        except FeedbackTimeoutError:
            return "default"

    with workflow("ask") as wf:
        wf.add(ask)
    result = await run(wf, feedback_store=MemoryFeedbackStore(), checkpoint_store=tmp_path)
    assert result.status == "completed" and result.output == "default"
