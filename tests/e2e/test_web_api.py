"""The REST API of graflow_async.web (SPEC sections 5 and 8), over real HTTP.

Each test serves `create_app(...)` with aiohttp's TestServer on a free port of
127.0.0.1 and talks to it with a real client.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from graflow_async import FeedbackCancelledError, Workflow, run, task, workflow
from graflow_async.cli.serve import add_serve_command, serve
from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.web import WEB_STATE, create_app, setup

TOKEN = "s3cret-token"
MIB = 1024 * 1024


def feedback(kind: str = "approval", *, fid: str = "fb-1", run_id: str = "run-1", **kw: Any) -> FeedbackRequest:
    return FeedbackRequest(
        fid, run_id, kw.pop("task_id", "task-a"), FeedbackType(kind), kw.pop("prompt", "Deploy?"), **kw
    )


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    async with TestClient(TestServer(create_app(**kwargs))) as client:
        yield client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for_status(client: TestClient[Any, Any], run_id: str, *statuses: str, **kw: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            body = await (await client.get(f"/api/runs/{run_id}", **kw)).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.01)


# --- health and listing -------------------------------------------------------------------------


async def test_health_is_ok_and_open_even_with_a_token():
    async with serving(auth_token=TOKEN) as client:
        response = await client.get("/health")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_list_returns_pending_requests_by_default_and_filters():
    store = MemoryFeedbackStore()
    await store.create(feedback(fid="a", run_id="r1", created_at=1.0))
    await store.create(feedback(fid="b", run_id="r2", created_at=2.0))
    await store.create(feedback(fid="c", run_id="r1", created_at=3.0))
    await store.respond("c", {"approved": True})
    async with serving(feedback_store=store) as client:
        body = await (await client.get("/api/feedback")).json()
        assert body["count"] == 2
        assert [r["feedback_id"] for r in body["requests"]] == ["a", "b"]
        assert body["requests"][0]["feedback_type"] == "approval"
        assert set(body["requests"][0]) >= {
            "feedback_id",
            "run_id",
            "task_id",
            "prompt",
            "options",
            "metadata",
            "timeout",
            "created_at",
            "status",
        }
        assert "notification_config" not in body["requests"][0]
        body = await (await client.get("/api/feedback", params={"run_id": "r1"})).json()
        assert [r["feedback_id"] for r in body["requests"]] == ["a"]
        body = await (await client.get("/api/feedback", params={"status": "all"})).json()
        assert body["count"] == 3
        body = await (await client.get("/api/feedback", params={"status": "answered", "run_id": "r1"})).json()
        assert [r["feedback_id"] for r in body["requests"]] == ["c"]
        response = await client.get("/api/feedback", params={"status": "bogus"})
        assert response.status == 400
        assert (await response.json())["field"] == "status"


async def test_get_shows_request_and_response_and_404_for_unknown():
    store = MemoryFeedbackStore()
    await store.create(feedback(metadata={"env": "prod"}))
    async with serving(feedback_store=store) as client:
        body = await (await client.get("/api/feedback/fb-1")).json()
        assert body["request"]["metadata"] == {"env": "prod"}
        assert body["response"] is None
        await store.respond("fb-1", {"approved": False, "reason": "not today"})
        body = await (await client.get("/api/feedback/fb-1")).json()
        assert body["response"]["approved"] is False
        assert body["response"]["reason"] == "not today"
        assert body["request"]["status"] == "answered"
        response = await client.get("/api/feedback/nope")
        assert response.status == 404
        assert "nope" in (await response.json())["error"]


# --- answering --------------------------------------------------------------------------------------


async def test_respond_answers_and_wakes_the_waiter():
    store = MemoryFeedbackStore()
    await store.create(feedback())
    waiter = asyncio.create_task(store.wait("fb-1", timeout=5))
    async with serving(feedback_store=store) as client:
        response = await client.post("/api/feedback/fb-1/respond", json={"approved": True, "responded_by": "ana"})
        assert response.status == 200
        body = await response.json()
        assert body["response"]["approved"] is True
        assert body["response"]["responded_by"] == "ana"
        answer = await asyncio.wait_for(waiter, 1)
        assert answer.approved is True


@pytest.mark.parametrize(
    ("kind", "options", "answer", "field"),
    [
        ("approval", None, {"approved": "yes"}, "approved"),
        ("text", None, {"text": 3}, "text"),
        ("selection", ["a", "b"], {"selected": "c"}, "selected"),
        ("multi_selection", ["a", "b"], {"selected_multiple": ["a", "z"]}, "selected_multiple"),
        ("custom", None, {"custom_data": [1, 2]}, "custom_data"),
        ("approval", None, {"approved": True, "colour": "red"}, "colour"),
    ],
)
async def test_respond_400_names_the_invalid_field(kind, options, answer, field):
    store = MemoryFeedbackStore()
    await store.create(feedback(kind, options=options))
    async with serving(feedback_store=store) as client:
        response = await client.post("/api/feedback/fb-1/respond", json=answer)
        assert response.status == 400
        body = await response.json()
        assert body["field"] == field
        assert field in body["error"]
        assert (await store.get("fb-1"))[1] is None


async def test_respond_404_unknown_and_409_when_answered_or_cancelled():
    store = MemoryFeedbackStore()
    await store.create(feedback(fid="a"))
    await store.create(feedback(fid="b"))
    async with serving(feedback_store=store) as client:
        response = await client.post("/api/feedback/nope/respond", json={"approved": True})
        assert response.status == 404
        assert (await client.post("/api/feedback/a/respond", json={"approved": True})).status == 200
        response = await client.post("/api/feedback/a/respond", json={"approved": False})
        assert response.status == 409
        assert "error" in await response.json()
        await store.cancel("b")
        assert (await client.post("/api/feedback/b/respond", json={"approved": True})).status == 409


async def test_respond_rejects_large_bodies_other_content_types_and_bad_json():
    store = MemoryFeedbackStore()
    await store.create(feedback())
    big = json.dumps({"approved": True, "reason": "x" * (MIB + 10)}).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    json_type = {"Content-Type": "application/json"}
    async with serving(feedback_store=store) as client:
        response = await client.post("/api/feedback/fb-1/respond", data=io.BytesIO(big), headers=json_type)
        assert response.status == 413
        response = await client.post("/api/feedback/fb-1/respond", data=chunked(), headers=json_type)
        assert response.status == 413
        assert "error" in await response.json()
        response = await client.post(
            "/api/feedback/fb-1/respond", data=b'{"approved": true}', headers={"Content-Type": "text/plain"}
        )
        assert response.status == 415
        response = await client.post(
            "/api/feedback/fb-1/respond",
            data="approved=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status == 415
        response = await client.post("/api/feedback/fb-1/respond", data=b'{"approved": tru', headers=json_type)
        assert response.status == 400
        assert "JSON" in (await response.json())["error"]
        response = await client.post("/api/feedback/fb-1/respond", data=b"[1, 2]", headers=json_type)
        assert response.status == 400
    assert (await store.get("fb-1"))[1] is None  # nothing was recorded


async def test_delete_cancels_and_the_waiter_gets_feedback_cancelled_error():
    store = MemoryFeedbackStore()
    await store.create(feedback())
    waiter = asyncio.create_task(store.wait("fb-1", timeout=5))
    await asyncio.sleep(0)  # yield: the waiter waits
    async with serving(feedback_store=store) as client:
        response = await client.delete("/api/feedback/fb-1")
        assert response.status == 200
        assert await response.json() == {"status": "cancelled"}
        with pytest.raises(FeedbackCancelledError):
            await asyncio.wait_for(waiter, 1)
        assert (await client.delete("/api/feedback/fb-1")).status == 409
        assert (await client.delete("/api/feedback/nope")).status == 404
        body = await (await client.get("/api/feedback/fb-1")).json()
        assert body["request"]["status"] == "cancelled"


# --- authentication and CORS ---------------------------------------------------------------------------

API_CALLS = [
    ("GET", "/api/feedback", None),
    ("GET", "/api/feedback/fb-1", None),
    ("POST", "/api/feedback/fb-1/respond", {"approved": True}),
    ("DELETE", "/api/feedback/fb-1", None),
    ("POST", "/api/runs", {"workflow": "hello"}),
    ("GET", "/api/runs/some-run", None),
    ("GET", "/api/runs/some-run/events", None),
]


@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}]
)
async def test_every_api_route_needs_the_bearer_token(method, path, body, headers):
    store = MemoryFeedbackStore()
    await store.create(feedback())
    async with serving(feedback_store=store, auth_token=TOKEN, workflows={"hello": hello_workflow()}) as client:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status == 401
        assert "error" in await response.json()
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await store.get("fb-1"))[0].status == "pending"


async def test_the_right_token_opens_the_api_and_is_compared_in_constant_time(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    store = MemoryFeedbackStore()
    await store.create(feedback())
    async with serving(feedback_store=store, auth_token=TOKEN) as client:
        assert (await client.get("/api/feedback", headers=bearer())).status == 200
        assert (TOKEN.encode(), TOKEN.encode()) in calls
        calls.clear()
        assert (await client.get("/api/feedback", headers=bearer("s3cret-tokeX"))).status == 401
        assert (b"s3cret-tokeX", TOKEN.encode()) in calls
        response = await client.post("/api/feedback/fb-1/respond", json={"approved": True}, headers=bearer())
        assert response.status == 200
        assert (await client.delete("/api/feedback/fb-1", headers=bearer())).status == 409


async def test_no_route_sends_cors_headers():
    store = MemoryFeedbackStore()
    await store.create(feedback())
    origin = {"Origin": "https://evil.example"}
    async with serving(feedback_store=store) as client:
        responses = [
            await client.get("/health", headers=origin),
            await client.get("/api/feedback", headers=origin),
            await client.options(
                "/api/feedback/fb-1/respond",
                headers={
                    **origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            ),
            await client.post("/api/feedback/fb-1/respond", json={"approved": True}, headers=origin),
            await client.delete("/api/feedback/fb-1", headers=origin),
            await client.get("/ui/feedback/", headers=origin),
        ]
        for response in responses:
            assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.url


def test_setup_validates_its_arguments():
    app = web.Application()
    with pytest.raises(ValueError, match="auth_token"):
        setup(app, auth_token="")
    with pytest.raises(ValueError, match="prefix"):
        setup(web.Application(), prefix="graflow")
    setup(app, feedback_store=MemoryFeedbackStore())
    with pytest.raises(RuntimeError, match="already"):
        setup(app, feedback_store=MemoryFeedbackStore())


async def test_setup_mounts_under_a_prefix_on_an_existing_app():
    app = web.Application()

    async def own(request: web.Request) -> web.Response:
        return web.Response(text="mine")

    app.router.add_get("/", own)
    store = MemoryFeedbackStore()
    await store.create(feedback())
    setup(app, feedback_store=store, prefix="/hitl/", auth_token=TOKEN)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/")).text() == "mine"  # the app's own routes stay open
        assert (await client.get("/hitl/health")).status == 200
        assert (await client.get("/hitl/api/feedback")).status == 401
        body = await (await client.get("/hitl/api/feedback", headers=bearer())).json()
        assert body["count"] == 1
        assert (await client.get("/api/feedback", headers=bearer())).status == 404
        login = await client.get("/hitl/ui/feedback/", allow_redirects=False)
        assert login.status == 303
        assert login.headers["Location"].startswith("/hitl/ui/login")


# --- runs --------------------------------------------------------------------------------------------------


def hello_workflow() -> Workflow:
    @task
    async def greet(name: str = "world") -> str:
        return f"hello {name}"

    @task
    async def shout(greet: str) -> str:
        return greet.upper()

    with workflow("hello") as wf:
        greet >> shout
    return wf


def gated_workflow(gate: asyncio.Event, name: str = "gated", started: asyncio.Event | None = None) -> Workflow:
    @task
    async def before() -> int:
        return 1

    @task
    async def wait_gate(before: int) -> int:
        if started is not None:
            started.set()
        await gate.wait()
        return before + 1

    with workflow(name) as wf:
        before >> wait_gate
    return wf


async def test_post_runs_starts_a_run_that_completes_with_inputs_as_channel():
    async with serving(workflows={"hello": hello_workflow()}) as client:
        response = await client.post("/api/runs", json={"workflow": "hello", "inputs": {"name": "ada"}})
        assert response.status == 202
        run_id = (await response.json())["run_id"]
        assert response.headers["Location"] == f"/api/runs/{run_id}"
        body = await wait_for_status(client, run_id, "completed", "failed")
        started_at, ended_at = body.pop("started_at"), body.pop("ended_at")
        assert body == {
            "run_id": run_id,
            "workflow": "hello",
            "status": "completed",
            "error": None,
            "pending_feedback": [],
            "results": {"greet": "hello ada", "shout": "HELLO ADA"},
        }
        assert isinstance(started_at, float) and started_at <= ended_at <= time.time()


async def test_post_runs_404_unknown_workflow_and_400_bad_bodies():
    async with serving(workflows=[hello_workflow()]) as client:
        response = await client.post("/api/runs", json={"workflow": "nope"})
        assert response.status == 404
        assert (await response.json())["field"] == "workflow"
        bad = [
            [1],
            {"inputs": {}},
            {"workflow": 3},
            {"workflow": "hello", "inputs": [1]},
            {"workflow": "hello", "extra": 1},
        ]
        for body in bad:
            response = await client.post("/api/runs", json=body)
            assert response.status == 400, body
            assert "error" in await response.json()
        assert (await client.post("/api/runs", data=b"{", headers={"Content-Type": "application/json"})).status == 400
        assert (await client.post("/api/runs", data=b"{}", headers={"Content-Type": "text/plain"})).status == 415
        assert (await client.get("/api/runs/unknown")).status == 404
        assert (await client.get("/api/runs/unknown/events")).status == 404


async def test_a_failing_run_is_reported_failed_with_its_error():
    @task
    async def boom() -> None:
        raise RuntimeError("kaput")

    with workflow("boom") as wf:
        wf.add(boom)
    async with serving(workflows={"boom": wf}) as client:
        run_id = (await (await client.post("/api/runs", json={"workflow": "boom"})).json())["run_id"]
        body = await wait_for_status(client, run_id, "failed", "completed")
        assert body["status"] == "failed"
        assert "kaput" in body["error"]


async def test_events_stream_yields_the_run_events_and_ends_with_the_run():
    gate = asyncio.Event()
    async with serving(workflows={"gated": gated_workflow(gate)}) as client:
        run_id = (await (await client.post("/api/runs", json={"workflow": "gated"})).json())["run_id"]
        response = await client.get(f"/api/runs/{run_id}/events")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        assert b"event: run_started" in first
        gate.set()
        rest = await asyncio.wait_for(response.content.read(), 5)  # to EOF: the stream ends
    frames = [first.decode(), *rest.decode().strip().split("\n\n")]
    events = [json.loads(_field(f, "data")) for f in frames if _field(f, "event") != "end"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert {"task_started", "task_completed"} <= set(kinds)
    assert all(e["run_id"] == run_id and {"task_id", "timestamp", "data"} <= set(e) for e in events)
    assert [int(_field(f, "id")) for f in frames[:-1]] == list(range(1, len(events) + 1))
    assert _field(frames[-1], "event") == "end"
    assert json.loads(_field(frames[-1], "data"))["status"] == "completed"


def _field(frame: str, name: str) -> str:
    for line in frame.splitlines():
        if line.startswith(f"{name}: "):
            return line[len(name) + 2 :]
    return ""


async def test_shutdown_cancels_in_flight_runs_cleanly():
    gate, started = asyncio.Event(), asyncio.Event()
    app = create_app(workflows={"gated": gated_workflow(gate, started=started)}, feedback_store=MemoryFeedbackStore())
    before = asyncio.all_tasks()
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/api/runs"), json={"workflow": "gated"}) as response:
            run_id = (await response.json())["run_id"]
        await asyncio.wait_for(started.wait(), 5)
        async with session.get(server.make_url(f"/api/runs/{run_id}/events")) as stream:
            await stream.content.readuntil(b"\n\n")
            closing = asyncio.create_task(server.close())
            tail = await asyncio.wait_for(stream.content.read(), 5)  # the stream ends with the run
            await asyncio.wait_for(closing, 5)
    record = app[WEB_STATE].runs.live[run_id]
    assert record.status == "cancelled"
    assert "shut down" in (record.error or "")
    stored = await app[WEB_STATE].store.get_run(run_id)  # what a restarted app will show
    assert stored is not None and stored["status"] == "cancelled" and stored["ended_at"] is not None
    end = tail.decode().strip().split("\n\n")[-1]
    assert _field(end, "event") == "end" and json.loads(_field(end, "data"))["status"] == "cancelled"
    await asyncio.sleep(0)  # yield: tasks that have just ended are reaped
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


async def test_answering_the_last_request_of_a_suspended_run_resumes_it(tmp_path: Path):
    gate = asyncio.Event()
    calls: list[str] = []

    @task(inject_context=True)
    async def prepare(context: Any) -> str:
        calls.append("prepare")
        if context.resumed_metadata is None:
            await context.checkpoint(metadata={"waiting": "approval"})
        return "prepared"

    @task
    async def ship(prepare: str) -> str:
        await gate.wait()
        return f"{prepare}+shipped"

    with workflow("ship") as wf:
        prepare >> ship

    gate.set()
    first = await run(wf, run_id="run-s", checkpoint_store=str(tmp_path / "ckpt"))
    checkpoint = str(next((tmp_path / "ckpt" / "run-s").glob("*.ckpt")))
    (tmp_path / "ckpt" / "run-s" / "completed").unlink()  # as if the run had suspended instead
    gate.clear()
    store = MemoryFeedbackStore()  # what a run suspended on two questions leaves behind:
    await store.create(feedback(fid="q1", run_id="run-s"))
    await store.create(feedback("text", fid="q2", run_id="run-s"))
    await store.set_suspension("run-s", {"checkpoint": checkpoint, "workflow": "ship"})
    async with serving(
        feedback_store=store, workflows={"ship": wf}, checkpoint_store=str(tmp_path / "ckpt"), auth_token=TOKEN
    ) as client:
        body = await (await client.get("/api/runs/run-s", headers=bearer())).json()
        assert body["status"] == "suspended"
        assert [r["feedback_id"] for r in body["pending_feedback"]] == ["q1", "q2"]
        await client.post("/api/feedback/q1/respond", json={"approved": True}, headers=bearer())
        body = await (await client.get("/api/runs/run-s", headers=bearer())).json()
        assert body["status"] == "suspended"  # q2 still waits
        await client.post("/api/feedback/q2/respond", json={"text": "go"}, headers=bearer())
        body = await wait_for_status(client, "run-s", "running", "completed", "failed", headers=bearer())
        assert body["status"] == "running"
        gate.set()
        body = await wait_for_status(client, "run-s", "completed", "failed", headers=bearer())
        assert body["status"] == "completed", body
        assert body["results"] == {"prepare": "prepared", "ship": "prepared+shipped"} == first.results
    assert calls == ["prepare", "prepare"]
    assert await store.get_suspension("run-s") is None  # done: nothing left to resume


async def test_answers_do_not_resume_runs_of_workflows_not_served(tmp_path: Path):
    store = MemoryFeedbackStore()
    await store.create(feedback(run_id="run-x"))
    await store.set_suspension("run-x", {"checkpoint": str(tmp_path / "x.ckpt"), "workflow": "other"})
    async with serving(feedback_store=store, workflows={"hello": hello_workflow()}) as client:
        assert (await client.post("/api/feedback/fb-1/respond", json={"approved": True})).status == 200
        body = await (await client.get("/api/runs/run-x")).json()
        assert body["status"] == "suspended"
        assert body["pending_feedback"] == []


# --- python -m graflow_async serve -----------------------------------------------------------------------------


async def test_serve_command_serves_until_cancelled(tmp_path: Path, capsys, monkeypatch):
    import argparse
    import re

    monkeypatch.chdir(tmp_path)  # the default feedback store lives under ./.graflow
    monkeypatch.setenv("GRAFLOW_AUTH_TOKEN", TOKEN)
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "0", "--workflow", "test_web_api:hello_workflow"])
    assert args.handler is serve and args.host == "127.0.0.1"
    server = asyncio.create_task(serve(args))
    try:
        output = ""
        async with asyncio.timeout(5):
            while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", output)):
                output += capsys.readouterr().out
                await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{found.group(1)}"
        assert "1 workflows, auth on" in output
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health") as response:
                assert response.status == 200
            async with session.get(f"{base}/api/feedback") as response:
                assert response.status == 401
            async with session.post(f"{base}/api/runs", json={"workflow": "hello"}, headers=bearer()) as response:
                assert response.status == 202
    finally:
        server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


async def test_a_run_waiting_for_feedback_suspends_and_an_answer_resumes_it(tmp_path: Path):
    @task(inject_context=True)
    async def ask(context: Any) -> bool:
        return await context.request_approval("Release?", timeout=0.05)

    @task
    async def release(ask: bool) -> str:
        return "released" if ask else "held"

    with workflow("gatekeeper") as wf:
        ask >> release
    store = MemoryFeedbackStore()
    async with serving(feedback_store=store, workflows={"gatekeeper": wf}, checkpoint_store=str(tmp_path)) as client:
        run_id = (await (await client.post("/api/runs", json={"workflow": "gatekeeper"})).json())["run_id"]
        body = await wait_for_status(client, run_id, "suspended", "completed", "failed")
        assert body["status"] == "suspended", body
        [pending] = body["pending_feedback"]
        assert pending["prompt"] == "Release?" and pending["task_id"] == "ask"
        response = await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        assert response.status == 200
        body = await wait_for_status(client, run_id, "completed", "failed")
        assert body["status"] == "completed", body
        assert body["results"] == {"ask": True, "release": "released"}
        assert body["pending_feedback"] == []
        frames = (await (await client.get(f"/api/runs/{run_id}/events")).text()).strip().split("\n\n")
    kinds = [_field(f, "event") for f in frames]
    assert kinds.count("run_started") == 2  # the first run, then the resumed one
    assert {"feedback_requested", "run_suspended", "checkpoint_saved", "run_completed"} <= set(kinds)
    assert kinds[-1] == "end"
