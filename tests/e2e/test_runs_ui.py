"""The runs pages of the UI over real HTTP: the list (status, workflow, start, duration,
filters, older pages), a run's page (tasks, states, graph, Mermaid text, pending
feedback links, its script and event stream behind the session), and escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from web_flows import WORKFLOWS

from graflow_async import task, workflow
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.web import create_app
from graflow_async.web.runs import ui as runs_ui

TOKEN = "ui-runs-token"


@asynccontextmanager
async def serving(tmp_path: Path, **kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    kwargs.setdefault("workflows", WORKFLOWS)
    async with TestClient(TestServer(create_app(checkpoint_store=str(tmp_path), **kwargs))) as client:
        yield client


async def start(client: TestClient[Any, Any], name: str, until: str, **kw: Any) -> str:
    response = await client.post("/api/runs", json={"workflow": name}, **kw)
    run_id = str((await response.json())["run_id"])
    async with asyncio.timeout(10):
        while (await (await client.get(f"/api/runs/{run_id}", **kw)).json())["status"] != until:
            await asyncio.sleep(0.01)
    return run_id


def row_of(html: str, run_id: str) -> str:
    found = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {run_id}"
    return found.group(1)


async def test_the_runs_page_lists_runs_with_their_facts_and_filters(tmp_path: Path) -> None:
    async with serving(tmp_path) as client:
        done = await start(client, "hello", "completed")
        waiting = await start(client, "approval", "suspended")
        response = await client.get("/ui/runs/")
        assert response.status == 200 and response.content_type == "text/html"
        html = await response.text()
        assert html.index(waiting) < html.index(done)  # newest first
        row = row_of(html, done)
        assert f'href="/ui/runs/{done}"' in row and "<td>hello</td>" in row
        assert 'data-status="completed"' in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row)
        assert re.search(r"<td>\d+(\.\d)? (ms|s)</td>", row)  # its duration
        assert "1 request" in row_of(html, waiting)
        html = await (await client.get("/ui/runs/", params={"status": "suspended"})).text()
        assert waiting in html and done not in html and '<option value="suspended" selected>' in html
        html = await (await client.get("/ui/runs/", params={"workflow": "hello"})).text()
        assert done in html and waiting not in html
        html = await (await client.get("/ui/runs/", params={"status": "weird"})).text()
        assert "Unknown status" in html and done in html
        html = await (await client.get("/ui/runs/", params={"status": "failed"})).text()
        assert "No runs match these filters" in html
        assert (await client.get("/ui/runs", allow_redirects=False)).headers["Location"] == "/ui/runs/"


async def test_older_runs_are_on_further_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_ui, "PAGE_SIZE", 2)
    async with serving(tmp_path) as client:
        runs = [await start(client, "hello", "completed") for _ in range(3)]
        html = await (await client.get("/ui/runs/", params={"workflow": "hello"})).text()
        assert runs[2] in html and runs[1] in html and runs[0] not in html
        older = re.search(r'<a href="([^"]+)">Older runs', html)
        assert older and "workflow=hello" in older.group(1)
        html = await (await client.get(older.group(1).replace("&amp;", "&"))).text()
        assert runs[0] in html and runs[1] not in html and "Older runs" not in html
        html = await (await client.get("/ui/runs/", params={"cursor": "bogus"})).text()
        assert "not valid" in html


async def test_a_run_page_shows_tasks_graph_and_pending_feedback(tmp_path: Path) -> None:
    async with serving(tmp_path) as client:
        run_id = await start(client, "approval", "suspended")
        response = await client.get(f"/ui/runs/{run_id}")
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "connect-src 'self'" in csp
            and "unsafe-inline" not in csp.split("style-src")[0]
        )
        html = await response.text()
        assert '<span id="run-status" class="status" data-status="suspended"' in html
        ask = re.search(r'<tr data-task="ask">(.*?)</tr>', html, re.S)
        ship = re.search(r'<tr data-task="ship">(.*?)</tr>', html, re.S)
        assert ask and 'data-state="waiting"' in ask.group(1) and '<td class="attempts">1</td>' in ask.group(1)
        assert ship and 'data-state="pending"' in ship.group(1)
        assert '<g class="node" data-task="ask" data-state="waiting">' in html  # the graph, coloured by state
        assert 'class="edge"' in html and "flowchart TD" in html  # and its Mermaid text to copy
        [pending] = (await (await client.get(f"/api/runs/{run_id}")).json())["pending_feedback"]
        assert f'<a href="/ui/feedback/{pending["feedback_id"]}">Ship it?</a>' in html
        assert '<script src="/ui/static/run.js" defer></script>' in html
        assert f'data-events="/ui/runs/{run_id}/events?after=' in html
        missing = await client.get("/ui/runs/nope")
        assert missing.status == 404 and "There is no run" in await missing.text()
        script = await client.get("/ui/static/run.js")
        assert script.status == 200 and script.content_type == "application/javascript"
        assert "EventSource" in await script.text()


async def test_the_ui_event_stream_follows_the_session(tmp_path: Path) -> None:
    async with serving(tmp_path, auth_token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        run_id = await start(client, "hello", "completed", headers=auth)
        denied = await client.get(f"/ui/runs/{run_id}/events", allow_redirects=False)
        assert denied.status == 303 and "/ui/login" in denied.headers["Location"]
        login = await client.post("/ui/login", data={"token": TOKEN, "next": "/ui/runs/"}, allow_redirects=False)
        assert login.status == 303
        page = await client.get(f"/ui/runs/{run_id}")
        assert page.status == 200 and "completed" in await page.text()
        stream = await client.get(f"/ui/runs/{run_id}/events")
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        text = await asyncio.wait_for(stream.text(), 5)
        assert "event: run_started" in text and "event: run_completed" in text and "event: end" in text
        later = await client.get(f"/ui/runs/{run_id}/events", params={"after": "2"})
        assert "id: 1\n" not in await later.text()
        assert (await client.get("/ui/runs/nope/events")).status == 404


async def test_user_strings_are_escaped_on_the_runs_pages(tmp_path: Path) -> None:
    @task(id="<b>bold</b>")
    async def odd() -> str:
        return "<script>alert(1)</script>"

    with workflow("<i>wf</i>") as wf:
        wf.add(odd)
    async with serving(tmp_path, workflows={"<svg onload=x>": wf}) as client:
        run_id = await start(client, "<svg onload=x>", "completed")
        for path in ("/ui/runs/", f"/ui/runs/{run_id}"):
            html = await (await client.get(path)).text()
            assert "<svg onload" not in html and "<b>bold" not in html and "<script>alert" not in html
            assert "&lt;svg onload=x&gt;" in html
        html = await (await client.get(f"/ui/runs/{run_id}")).text()
        assert 'data-task="&lt;b&gt;bold&lt;/b&gt;"' in html
