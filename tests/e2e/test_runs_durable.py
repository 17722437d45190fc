"""Run records outlive the app (SPEC section 8), over the file store and a real Redis:
a restarted app lists and shows past runs, a run whose process was killed (SIGKILL, a
real child process) is reported interrupted, a run suspended by one app process is
resumed by another sharing the stores, and a run is cancelled from another process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from web_flows import WORKFLOWS
from worker_processes import PYTHONPATH, SUPPORT

from graflow_async.feedback import FeedbackStore, FileFeedbackStore, RedisFeedbackStore
from graflow_async.web import create_app


@dataclass
class Stores:
    """Feedback and checkpoint stores several app processes share."""

    spec: str  # the feedback store, as web_app_process.py takes it
    make: Callable[[], FeedbackStore]
    checkpoints: str
    logs: Path


@pytest.fixture(params=["file", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    checkpoints = str(tmp_path / "checkpoints")
    if request.param == "file":
        directory = tmp_path / "feedback"
        return Stores(str(directory), lambda: FileFeedbackStore(directory), checkpoints, tmp_path)
    url: str = request.getfixturevalue("redis_url")
    namespace = f"runs-{uuid.uuid4().hex[:8]}"
    return Stores(f"{url}#{namespace}", lambda: RedisFeedbackStore(url, namespace=namespace), checkpoints, tmp_path)


@asynccontextmanager
async def local_app(stores: Stores) -> AsyncIterator[TestClient[Any, Any]]:
    """An app in this process on the shared stores."""
    async with (
        stores.make() as store,
        TestClient(
            TestServer(create_app(workflows=WORKFLOWS, feedback_store=store, checkpoint_store=stores.checkpoints))
        ) as client,
    ):
        yield client


@asynccontextmanager
async def app_process(stores: Stores, lease: float | None = None) -> AsyncIterator[tuple[Any, str]]:
    """An app in a child process on the shared stores: (process, base URL)."""
    log = open(stores.logs / f"app-{uuid.uuid4().hex[:6]}.log", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SUPPORT / "web_app_process.py"),
        stores.spec,
        stores.checkpoints,
        *([str(lease)] if lease is not None else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("port "), line + Path(log.name).read_text()
        yield proc, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def start(http: Any, base: str, name: str, inputs: dict[str, Any] | None = None) -> str:
    async with http.post(f"{base}/api/runs", json={"workflow": name, "inputs": inputs or {}}) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["run_id"])


async def until(http: Any, base: str, run_id: str, *statuses: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            async with http.get(f"{base}/api/runs/{run_id}") as response:
                body: dict[str, Any] = await response.json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.02)


async def test_a_restarted_app_lists_and_shows_past_runs(stores: Stores) -> None:
    async with local_app(stores) as client:
        done = await start(client, "", "hello", {"name": "ada"})
        await until(client, "", done, "completed")
        waiting = await start(client, "", "approval")
        await until(client, "", waiting, "suspended")
        stuck = await start(client, "", "stuck")
        await until(client, "", stuck, "running")
    # the app stopped (its in-flight run was cancelled); a new one on the same stores:
    async with local_app(stores) as client:
        body = await (await client.get("/api/runs")).json()
        assert [(r["run_id"], r["status"]) for r in body["runs"]] == [
            (stuck, "cancelled"),
            (waiting, "suspended"),
            (done, "completed"),
        ]
        shown = await (await client.get(f"/api/runs/{done}")).json()
        assert shown["workflow"] == "hello" and shown["results"] == {"greet": "hello ada"}
        assert 0 < shown["started_at"] <= shown["ended_at"]
        listed = await (await client.get("/api/runs", params={"workflow": "approval"})).json()
        [pending] = listed["runs"][0]["pending_feedback"]
        await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
        resumed = await until(client, "", waiting, "completed", "failed")  # resumed by the new app
        assert resumed["results"]["ship"] == "shipped"
        html = await (await client.get("/ui/runs/")).text()
        assert all(run_id in html for run_id in (done, waiting, stuck))


async def test_a_run_whose_process_was_killed_is_interrupted(stores: Stores) -> None:
    async with app_process(stores) as (proc, base), aiohttp.ClientSession() as http:
        run_id = await start(http, base, "stuck")
        await until(http, base, run_id, "running")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    async with local_app(stores) as client:
        body = await (await client.get(f"/api/runs/{run_id}")).json()
        assert body["status"] == "interrupted" and body["workflow"] == "stuck"
        listed = await (await client.get("/api/runs", params={"status": "interrupted"})).json()
        assert [r["run_id"] for r in listed["runs"]] == [run_id]
        assert (await (await client.get("/api/runs", params={"status": "running"})).json())["runs"] == []
        events = await client.get(f"/api/runs/{run_id}/events")  # nothing to follow: it ends at once
        end = (await asyncio.wait_for(events.text(), 5)).strip().split("\n\n")[-1]
        assert "event: end" in end and '"interrupted"' in end
        # resumable, not ended: cancelling it ends it for good (no answer or resume revives it)
        cancelled = await client.post(f"/api/runs/{run_id}/cancel")
        assert cancelled.status == 202 and (await cancelled.json())["status"] == "cancelled"
        assert (await (await client.get(f"/api/runs/{run_id}")).json())["status"] == "cancelled"
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status == 409


async def test_a_run_suspended_in_one_process_is_resumed_by_another(stores: Stores) -> None:
    async with app_process(stores) as (_, base), aiohttp.ClientSession() as http:
        run_id = await start(http, base, "approval")
        await until(http, base, run_id, "suspended")
        async with http.get(f"{base}/api/runs/{run_id}/events") as stream, local_app(stores) as client:
            body = await (await client.get(f"/api/runs/{run_id}")).json()
            assert body["status"] == "suspended" and body["workflow"] == "approval"
            [pending] = body["pending_feedback"]
            response = await client.post(f"/api/feedback/{pending['feedback_id']}/respond", json={"approved": True})
            assert response.status == 200
            here = await until(client, "", run_id, "completed", "failed")
            assert here["status"] == "completed" and here["results"]["ship"] == "shipped"
            there = await until(http, base, run_id, "completed", "failed")  # the first process reads the record
            assert there["status"] == "completed" and there["results"]["ship"] == "shipped"
            tail = (await asyncio.wait_for(stream.text(), 10)).strip().split("\n\n")[-1]
            assert json.loads(tail.split("data: ", 1)[1])["status"] == "completed"  # its stream ended too


async def test_a_run_of_another_process_is_cancelled_through_its_record(stores: Stores) -> None:
    async with app_process(stores, lease=0.6) as (_, base), aiohttp.ClientSession() as http:
        run_id = await start(http, base, "stuck")
        await until(http, base, run_id, "running")
        async with local_app(stores) as client:
            assert (await (await client.get(f"/api/runs/{run_id}")).json())["status"] == "running"
            response = await client.post(f"/api/runs/{run_id}/cancel")
            assert response.status == 202 and (await response.json())["status"] == "cancelling"
            body = await until(client, "", run_id, "cancelled")  # its owner noticed at a heartbeat
            assert body["error"] == "cancelled by request"
        assert (await until(http, base, run_id, "cancelled"))["ended_at"] is not None
