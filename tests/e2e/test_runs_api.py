"""The runs API (SPEC section 8) over real HTTP: listing and paging, cancelling, event
streams that outlast a suspension, resuming by workflow key or name, notification
links under the public URL, and the feedback listing's pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from graflow_async import Workflow, run, task, workflow
from graflow_async.exceptions import CheckpointError, RunAlreadyRunningError, RunCompletedError
from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.web import create_app, get_run, start_run

TOKEN = "runs-token"


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    async with TestClient(TestServer(create_app(**kwargs))) as client:
        yield client


async def start(client: TestClient[Any, Any], name: str, inputs: dict[str, Any] | None = None, **kw: Any) -> str:
    response = await client.post("/api/runs", json={"workflow": name, "inputs": inputs or {}}, **kw)
    assert response.status == 202, await response.text()
    return str((await response.json())["run_id"])


async def until(client: TestClient[Any, Any], run_id: str, *statuses: str, **kw: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            body = await (await client.get(f"/api/runs/{run_id}", **kw)).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.01)


def hello() -> Workflow:
    @task(inject_context=True)
    async def greet(context: Any) -> str:
        return f"hello {await context.channel.get('name', 'you')}"

    with workflow("hello") as wf:
        wf.add(greet)
    return wf


def boom() -> Workflow:
    @task
    async def explode() -> None:
        raise RuntimeError("kaput")

    with workflow("boom") as wf:
        wf.add(explode)
    return wf


def gated(gate: asyncio.Event) -> Workflow:
    @task
    async def wait_gate() -> str:
        await gate.wait()
        return "through"

    with workflow("gated") as wf:
        wf.add(wait_gate)
    return wf


def gatekeeper(name: str = "gatekeeper") -> Workflow:
    """Asks for an approval (0.05 s, then the run suspends; or a given `hook` timeout),
    notifying the webhook or Slack URL in the channel's `hook` if there is one."""

    @task(inject_context=True)
    async def ask(context: Any) -> bool:
        hook = await context.channel.get("hook", None)
        config = {"type": await context.channel.get("kind", "webhook"), "url": hook} if hook else None
        return await context.request_approval(
            "Release?", timeout=float(await context.channel.get("wait", 0.05)), notification_config=config
        )

    @task
    async def release(ask: bool) -> str:
        return "released" if ask else "held"

    with workflow(name) as wf:
        ask >> release
    return wf


def frames(text: str) -> list[dict[str, str]]:
    parsed = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line and not line.startswith(":"))
        if fields:
            parsed.append(fields)
    return parsed


async def read_until(stream: aiohttp.ClientResponse, kind: str, seen: list[str]) -> None:
    """Read SSE frames into `seen` (the raw text) until an event of `kind` arrived."""
    async with asyncio.timeout(10):
        while f"event: {kind}\n" not in "".join(seen):
            seen.append((await stream.content.readuntil(b"\n\n")).decode())


# --- listing ---------------------------------------------------------------------------------------


async def test_runs_are_listed_newest_first_filtered_and_paged() -> None:
    async with serving(workflows={"hello": hello(), "boom": boom()}) as client:
        started = []
        for i in range(5):
            started.append(await start(client, "boom" if i in (1, 3) else "hello", {"name": str(i)}))
            await until(client, started[-1], "completed", "failed")
        body = await (await client.get("/api/runs")).json()
        assert [r["run_id"] for r in body["runs"]] == started[::-1] and body["next_cursor"] is None
        first = body["runs"][0]
        assert set(first) == {
            "run_id",
            "workflow",
            "status",
            "results",
            "pending_feedback",
            "error",
            "started_at",
            "ended_at",
        }
        assert first["results"] == {"greet": "hello 4"} and first["workflow"] == "hello"
        pages, cursor = [], None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            body = await (await client.get("/api/runs", params=params)).json()
            pages.append([r["run_id"] for r in body["runs"]])
            if (cursor := body["next_cursor"]) is None:
                break
        assert pages == [started[4:2:-1], started[2:0:-1], started[:1]]
        failed = await (await client.get("/api/runs", params={"status": "failed"})).json()
        assert [r["run_id"] for r in failed["runs"]] == [started[3], started[1]]
        assert all("kaput" in r["error"] for r in failed["runs"])
        named = await (await client.get("/api/runs", params={"workflow": "hello", "limit": "1"})).json()
        assert [r["run_id"] for r in named["runs"]] == [started[4]] and named["next_cursor"]
        for params, field in [
            ({"status": "weird"}, "status"),
            ({"limit": "0"}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"cursor": "garbage"}, "cursor"),
        ]:
            response = await client.get("/api/runs", params=params)
            assert response.status == 400, params
            assert (await response.json())["field"] == field
        assert len((await (await client.get("/api/runs", params={"limit": "99999"})).json())["runs"]) == 5


async def test_a_running_run_shows_no_end_and_the_api_needs_the_token() -> None:
    gate = asyncio.Event()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(workflows={"gated": gated(gate)}, auth_token=TOKEN) as client:
        run_id = await start(client, "gated", headers=auth)
        body = await until(client, run_id, "running", headers=auth)
        assert body["ended_at"] is None and body["started_at"] > 0 and body["workflow"] == "gated"
        assert (await client.get("/api/runs")).status == 401
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status == 401
        listed = await (await client.get("/api/runs", params={"status": "running"}, headers=auth)).json()
        assert [r["run_id"] for r in listed["runs"]] == [run_id]
        gate.set()
        await until(client, run_id, "completed", headers=auth)


# --- cancelling ----------------------------------------------------------------------------------------


async def test_cancelling_a_running_run_ends_it_as_cancelled() -> None:
    gate = asyncio.Event()
    async with serving(workflows={"gated": gated(gate)}) as client:
        run_id = await start(client, "gated")
        await until(client, run_id, "running")
        stream = await client.get(f"/api/runs/{run_id}/events")
        response = await client.post(f"/api/runs/{run_id}/cancel")
        assert response.status == 202
        assert await response.json() == {"run_id": run_id, "status": "cancelled"}
        body = await (await client.get(f"/api/runs/{run_id}")).json()
        assert body["status"] == "cancelled" and body["error"] == "cancelled by request" and body["ended_at"]
        tail = frames(await asyncio.wait_for(stream.text(), 5))
        assert tail[-1]["event"] == "end" and json.loads(tail[-1]["data"])["status"] == "cancelled"
        again = await client.post(f"/api/runs/{run_id}/cancel")
        assert again.status == 409 and "cancelled" in (await again.json())["error"]
        assert (await client.post("/api/runs/nope/cancel")).status == 404


async def test_cancelling_a_suspended_run_cancels_its_questions_and_it_never_resumes(tmp_path: Path) -> None:
    store = MemoryFeedbackStore()
    async with serving(
        workflows={"gatekeeper": gatekeeper()}, feedback_store=store, checkpoint_store=str(tmp_path)
    ) as client:
        run_id = await start(client, "gatekeeper")
        [pending] = (await until(client, run_id, "suspended"))["pending_feedback"]
        response = await client.post(f"/api/runs/{run_id}/cancel")
        assert response.status == 202 and (await response.json())["status"] == "cancelled"
        body = await (await client.get(f"/api/runs/{run_id}")).json()
        assert body["status"] == "cancelled" and body["pending_feedback"] == [] and body["ended_at"]
        request = await (await client.get(f"/api/feedback/{pending['feedback_id']}")).json()
        assert request["request"]["status"] == "cancelled"
        assert (
            await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        ).status == 409
        assert await store.get_suspension(run_id) is None
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status == 409
        await asyncio.sleep(0.1)  # a window in which the refused cancel must change nothing
        assert (await (await client.get(f"/api/runs/{run_id}")).json())["status"] == "cancelled"


# --- events ----------------------------------------------------------------------------------------------


async def test_the_event_stream_stays_open_across_suspension_and_resumption(tmp_path: Path) -> None:
    async with serving(workflows={"gatekeeper": gatekeeper()}, checkpoint_store=str(tmp_path)) as client:
        run_id = await start(client, "gatekeeper")
        stream = await client.get(f"/api/runs/{run_id}/events")
        seen: list[str] = []
        await read_until(stream, "run_suspended", seen)
        assert (await until(client, run_id, "suspended"))["status"] == "suspended"
        with pytest.raises(TimeoutError):  # still open: no end while the run waits
            async with asyncio.timeout(0.5):
                seen.append((await stream.content.readuntil(b"\n\n")).decode())
        assert "event: end" not in "".join(seen)
        [pending] = (await (await client.get(f"/api/runs/{run_id}")).json())["pending_feedback"]
        await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        rest = await asyncio.wait_for(stream.content.read(), 10)  # to EOF: the run completed
        events = frames("".join(seen) + rest.decode())
        kinds = [e["event"] for e in events]
        assert kinds.count("run_started") == 2 and kinds[-2:] == ["run_completed", "end"]
        assert json.loads(events[-1]["data"])["status"] == "completed"
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == list(range(1, len(ids) + 1))
        replay = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(ids[-3])})
        assert [int(e["id"]) for e in frames(await replay.text()) if "id" in e] == ids[-2:]


# --- resuming ------------------------------------------------------------------------------------------------


async def test_a_run_started_under_another_key_than_its_name_is_resumed(tmp_path: Path) -> None:
    async with serving(workflows={"release-v2": gatekeeper("gatekeeper")}, checkpoint_store=str(tmp_path)) as client:
        run_id = await start(client, "release-v2")
        [pending] = (await until(client, run_id, "suspended"))["pending_feedback"]
        await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        body = await until(client, run_id, "completed", "failed")
        assert body["status"] == "completed" and body["results"]["release"] == "released"
        assert body["workflow"] == "release-v2"


async def test_a_run_suspended_elsewhere_is_resumed_by_its_workflow_name(tmp_path: Path) -> None:
    store = MemoryFeedbackStore()
    wf = gatekeeper("gatekeeper")
    first = await run(wf, feedback_store=store, checkpoint_store=str(tmp_path))  # a plain run, not the app's
    assert first.status == "suspended"
    async with serving(workflows={"gk": wf}, feedback_store=store, checkpoint_store=str(tmp_path)) as client:
        body = await (await client.get(f"/api/runs/{first.run_id}")).json()
        assert body["status"] == "suspended" and body["workflow"] == "gatekeeper" and body["started_at"] is None
        [pending] = body["pending_feedback"]
        await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": False})
        body = await until(client, first.run_id, "completed", "failed")
        assert body["results"]["release"] == "held" and body["workflow"] == "gk"


# --- notifications ----------------------------------------------------------------------------------------------


@asynccontextmanager
async def hook_server() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with TestServer(app) as server:
        yield str(server.make_url("/hook")), received


@pytest.mark.parametrize("kind", ["webhook", "slack"])
async def test_notifications_link_to_the_request_under_the_public_url(kind: str, tmp_path: Path) -> None:
    public = "https://ops.example.com/wf/"
    async with (
        hook_server() as (url, received),
        serving(
            workflows={"gatekeeper": gatekeeper()}, checkpoint_store=str(tmp_path), public_url=public, prefix="/wf"
        ) as client,
    ):
        run_id = (
            await (
                await client.post(
                    "/wf/api/runs", json={"workflow": "gatekeeper", "inputs": {"hook": url, "kind": kind, "wait": 5}}
                )
            ).json()
        )["run_id"]
        payload = await asyncio.wait_for(received.get(), 10)
        pending = (await (await client.get(f"/wf/api/runs/{run_id}")).json())["pending_feedback"]
        link = f"https://ops.example.com/wf/ui/feedback/{pending[0]['feedback_id']}"
        if kind == "webhook":
            assert payload["respond_url"] == link and payload["run_id"] == run_id
        else:
            assert f"<{link}|open the request>" in payload["text"]
        assert (await client.get(link.removeprefix("https://ops.example.com"))).status == 200  # it is the page
        await client.post(f"/wf/api/feedback/{pending[0]['feedback_id']}/respond", json={"approved": True})


def test_a_public_url_must_be_an_absolute_http_url() -> None:
    for bad in ("ops.example.com", "ftp://ops.example.com", "https://x.example/?a=1", ""):
        with pytest.raises(ValueError, match="public_url"):
            create_app(feedback_store=MemoryFeedbackStore(), public_url=bad)


async def test_serve_takes_a_public_url(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import re

    from graflow_async.cli.serve import add_serve_command, serve

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "serve",
            "--port",
            "0",
            "--workflow",
            "test_runs_api:served_gatekeeper",
            "--public-url",
            "http://public.example:8443/",
        ]
    )
    server = asyncio.create_task(serve(args))
    try:
        output = ""
        async with asyncio.timeout(5):
            while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", output)):
                output += capsys.readouterr().out
                await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{found.group(1)}"
        async with hook_server() as (url, received), aiohttp.ClientSession() as http:
            await http.post(f"{base}/api/runs", json={"workflow": "gatekeeper", "inputs": {"hook": url, "wait": 5}})
            payload = await asyncio.wait_for(received.get(), 10)
            assert payload["respond_url"] == f"http://public.example:8443/ui/feedback/{payload['feedback_id']}"
            await http.post(f"{base}/api/feedback/{payload['feedback_id']}/respond", json={"approved": True})
    finally:
        server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    bad = parser.parse_args(["serve", "--port", "0", "--public-url", "nope"])
    from graflow_async.cli.main import UsageError

    with pytest.raises(UsageError, match="--public-url"):
        await serve(bad)


served_gatekeeper = gatekeeper()


# --- starting runs from handlers of one's own ------------------------------------------------------------------


async def test_start_run_and_get_run_serve_handlers_of_ones_own() -> None:
    app = create_app(workflows={"hello": hello()}, feedback_store=MemoryFeedbackStore())
    async with TestClient(TestServer(app)) as client:
        run_id = await start_run(app, "hello", {"name": "own handler"})
        body = await until(client, run_id, "completed")
        assert body == await get_run(app, run_id)
        assert body["results"] == {"greet": "hello own handler"}
        assert await get_run(app, "nope") is None
        with pytest.raises(KeyError, match="unknown workflow"):
            await start_run(app, "nope")
    with pytest.raises(RuntimeError, match="not running runs"):
        await start_run(app, "hello")


# --- feedback pages ------------------------------------------------------------------------------------------------


async def test_the_feedback_listing_is_paged_like_the_runs() -> None:
    store = MemoryFeedbackStore()
    for i in range(5):
        await store.create(FeedbackRequest(f"fb-{i}", "run-1", "t", FeedbackType.APPROVAL, "?", created_at=float(i)))
    async with serving(feedback_store=store) as client:
        body = await (await client.get("/api/feedback")).json()
        assert body["count"] == 5 and body["next_cursor"] is None
        seen, cursor = [], None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            body = await (await client.get("/api/feedback", params=params)).json()
            assert body["count"] == len(body["requests"]) <= 2
            seen += [r["feedback_id"] for r in body["requests"]]
            if (cursor := body["next_cursor"]) is None:
                break
        assert seen == [f"fb-{i}" for i in range(5)]
        assert (await client.get("/api/feedback", params={"cursor": "zz"})).status == 400
        assert (await client.get("/api/feedback", params={"limit": "-1"})).status == 400


# --- resume refusing ----------------------------------------------------------------------------------------------


async def suspended_elsewhere(tmp_path: Path, store: MemoryFeedbackStore) -> tuple[Workflow, Any]:
    """A run of `gatekeeper` suspended by a plain `run` on `store`, with a second
    request pending so that an answer through the app sets off a resume."""
    wf = gatekeeper()
    first = await run(wf, feedback_store=store, checkpoint_store=str(tmp_path))
    assert first.status == "suspended"
    await store.create(FeedbackRequest("extra", first.run_id, "ask", FeedbackType.APPROVAL, "Also?"))
    return wf, first


async def test_a_resume_refused_because_another_process_runs_the_run_changes_nothing(
    tmp_path: Path, log_capture: list[dict[str, Any]]
) -> None:
    from graflow_async.checkpoints.runlock import run_lease
    from graflow_async.checkpoints.stores import open_store

    store = MemoryFeedbackStore()
    wf, first = await suspended_elsewhere(tmp_path, store)
    await store.respond(first.pending_feedback[0].feedback_id, {"approved": True})
    async with (
        open_store(str(tmp_path)) as checkpoints,
        run_lease(checkpoints, first.run_id),
        serving(workflows={"gatekeeper": wf}, feedback_store=store, checkpoint_store=str(tmp_path)) as client,
    ):
        assert (await client.post("/api/feedback/extra/respond", json={"approved": True})).status == 200
        async with asyncio.timeout(5):
            while not [e for e in log_capture if e["event"] == "not resuming run"]:
                await asyncio.sleep(0.01)
        body = await (await client.get(f"/api/runs/{first.run_id}")).json()
        assert body["status"] == "suspended" and body["error"] is None  # not failed: someone else runs it
        assert await store.get_suspension(first.run_id) is not None
    assert "already running" in next(e for e in log_capture if e["event"] == "not resuming run")["reason"]


async def test_a_resume_refused_because_the_run_completed_records_it_completed(tmp_path: Path) -> None:
    from graflow_async import resume

    store = MemoryFeedbackStore()
    wf, first = await suspended_elsewhere(tmp_path, store)
    await store.respond(first.pending_feedback[0].feedback_id, {"approved": True})
    done = await resume(first.checkpoint, workflow=wf, feedback_store=store)  # completed by someone else
    assert done.status == "completed"
    stale = {"checkpoint": first.checkpoint, "workflow": "gatekeeper"}
    await store.set_suspension(first.run_id, stale)  # as if its process died before clearing it
    async with serving(workflows={"gatekeeper": wf}, feedback_store=store, checkpoint_store=str(tmp_path)) as client:
        await client.post("/api/feedback/extra/respond", json={"approved": True})
        body = await until(client, first.run_id, "completed", "failed")
        assert body["status"] == "completed" and body["error"] is None
        assert await store.get_suspension(first.run_id) is None


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (RunCompletedError("?", "in words nobody reads"), "completed"),  # told by its type
        (RunAlreadyRunningError("?", "in words nobody reads"), "suspended"),
        (CheckpointError("run x is already running"), "failed"),  # the words alone are no refusal
        (CheckpointError("run x has completed since checkpoint 'y' was saved"), "failed"),
    ],
)
async def test_the_app_tells_a_refused_resume_by_the_exception_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: CheckpointError, status: str
) -> None:
    from graflow_async.web.runs import manager

    async def refusing(*args: Any, **kwargs: Any) -> Any:
        raise raised

    store = MemoryFeedbackStore()
    wf, first = await suspended_elsewhere(tmp_path, store)
    await store.respond(first.pending_feedback[0].feedback_id, {"approved": True})
    monkeypatch.setattr(manager, "resume", refusing)
    async with serving(workflows={"gatekeeper": wf}, feedback_store=store, checkpoint_store=str(tmp_path)) as client:
        assert (await client.post("/api/feedback/extra/respond", json={"approved": True})).status == 200
        body = await until(client, first.run_id, "completed", "suspended", "failed")
        assert body["status"] == status, body
        assert (body["error"] is None) == (status != "failed")


# --- streams (SPEC 12) -------------------------------------------------------------------------------------


def streamer() -> Workflow:
    with workflow("streamer") as wf:

        @task(inject_context=True)
        async def speak(context: Any) -> str:
            for i in range(20):
                await context.stream(f"word{i} ")
                await asyncio.sleep(0.005)
            await context.stream({"done": True, "words": 20})
            return "spoken"

        wf.add(speak)
    return wf


async def test_streamed_chunks_are_sse_events_and_a_reconnect_gets_each_once_in_order() -> None:
    async with serving(workflows={"streamer": streamer()}) as client:
        run_id = await start(client, "streamer")
        first = await client.get(f"/api/runs/{run_id}/events")
        seen: list[str] = []
        async with asyncio.timeout(10):
            while "".join(seen).count("event: stream\n") < 5:
                seen.append((await first.content.readuntil(b"\n\n")).decode())
        first.close()  # the client drops, mid-stream
        events = frames("".join(seen))
        resume_at = events[-1]["id"]
        again = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": resume_at})
        rest = frames(await asyncio.wait_for(again.text(), 10))
        chunks = [json.loads(e["data"]) for e in events + rest if e.get("event") == "stream"]
        assert [c["data"] for c in chunks] == [f"word{i} " for i in range(20)] + [{"done": True, "words": 20}]
        assert {(c["task_id"], c["attempt"]) for c in chunks} == {("speak", 1)}
        ids = [int(e["id"]) for e in events + rest if "id" in e]
        assert ids == sorted(set(ids))  # each once, in order, across the reconnection
        assert rest[-1]["event"] == "end" and json.loads(rest[-1]["data"])["status"] == "completed"


def talkative_gatekeeper() -> Workflow:
    """Streams, asks for an approval (the run suspends after 0.05 s), streams what it was
    told once the answer resumes it."""

    @task(inject_context=True)
    async def ask(context: Any) -> bool:
        await context.stream(f"asking (attempt {context.attempt})")
        approved = await context.request_approval("Release?", timeout=0.05)
        await context.stream(f"told {approved}")
        return approved

    @task(inject_context=True)
    async def release(context: Any, ask: bool) -> str:
        await context.stream("releasing")
        return "released" if ask else "held"

    with workflow("talkative") as wf:
        ask >> release
    return wf


async def test_a_stream_goes_on_across_a_suspension_and_a_resume_each_chunk_once(tmp_path: Path) -> None:
    async with serving(workflows={"talkative": talkative_gatekeeper()}, checkpoint_store=str(tmp_path)) as client:
        run_id = await start(client, "talkative")
        stream = await client.get(f"/api/runs/{run_id}/events")
        seen: list[str] = []
        await read_until(stream, "run_suspended", seen)
        stream.close()  # the client goes away while the run waits for its answer
        before = frames("".join(seen))
        [pending] = (await until(client, run_id, "suspended"))["pending_feedback"]
        await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        await until(client, run_id, "completed")
        again = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": before[-1]["id"]})
        after = frames(await asyncio.wait_for(again.text(), 10))
        chunks = [json.loads(e["data"])["data"] for e in before + after if e.get("event") == "stream"]
        # the resumed run asks again (the answer is there) and goes on: each chunk shown once
        assert chunks == ["asking (attempt 1)", "asking (attempt 1)", "told True", "releasing"]
        ids = [int(e["id"]) for e in before + after if "id" in e]
        assert ids == sorted(set(ids))
