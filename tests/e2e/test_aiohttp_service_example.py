"""examples/aiohttp_service.py: a service of its own starts refunds from its endpoint,
and a person approves them through the built-in UI (forms, session, CSRF), over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from examples.aiohttp_service import make_app
from graflow_async.feedback import MemoryFeedbackStore

ROOT = Path(__file__).resolve().parents[2]


async def approval_link(client: TestClient[Any, Any], run_page: str) -> str:
    """The link to the pending approval on the run's page, once the run asks."""
    async with asyncio.timeout(10):
        while True:
            html = await (await client.get(run_page)).text()
            if found := re.search(r'<a href="(/graflow/ui/feedback/[0-9a-f]+)">Refund', html):
                return found.group(1)
            await asyncio.sleep(0.05)


async def answer_in_the_ui(client: TestClient[Any, Any], form_url: str, decision: str, **fields: str) -> str:
    html = await (await client.get(form_url)).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token and "Refund 120.00 EUR for order A-1001?" in html
    response = await client.post(form_url, data={"csrf_token": token.group(1), "decision": decision, **fields})
    assert response.status == 200
    return await response.text()


async def refund_status(client: TestClient[Any, Any], refund_id: str, *statuses: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while (body := await (await client.get(f"/refunds/{refund_id}")).json())["status"] not in statuses:
            await asyncio.sleep(0.02)
    return body


async def test_a_refund_started_by_the_service_is_approved_in_the_ui(tmp_path: Path) -> None:
    hooks: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.json())
        return web.json_response({})

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    async with TestServer(receiver) as hook_server:
        app = make_app(
            feedback_store=MemoryFeedbackStore(),
            checkpoint_store=str(tmp_path),
            public_url="https://refunds.example.com/graflow",
            notify_url=str(hook_server.make_url("/hook")),
        )
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/refunds", json={"order": "A-1001", "amount": 120})
            assert response.status == 202
            started = await response.json()
            refund_id = started["refund_id"]
            assert started["follow_at"] == f"/graflow/ui/runs/{refund_id}"
            form_url = await approval_link(client, started["follow_at"])
            waiting = await refund_status(client, refund_id, "running")
            assert waiting["approve_at"] == [form_url] and waiting["outcome"] is None
            done = await answer_in_the_ui(client, form_url, "approve", responded_by="finance")
            assert "your answer was recorded" in done
            final = await refund_status(client, refund_id, "completed", "failed")
            assert final["outcome"] == "refunded 120.00 EUR to the card of A-1001" and final["approve_at"] == []
            listed = await (await client.get("/graflow/api/runs")).json()
            assert [r["run_id"] for r in listed["runs"]] == [refund_id]
            bad = await client.post("/refunds", data=b"{", headers={"Content-Type": "application/json"})
            assert bad.status == 400
    assert [h["respond_url"] for h in hooks] == [f"https://refunds.example.com{form_url}"]


async def test_a_declined_refund_after_a_suspension_is_not_paid(tmp_path: Path) -> None:
    app = make_app(feedback_store=MemoryFeedbackStore(), checkpoint_store=str(tmp_path), timeout=0.05)
    async with TestClient(TestServer(app)) as client:
        started = await (await client.post("/refunds", json={"order": "A-1001", "amount": 120})).json()
        suspended = await refund_status(client, started["refund_id"], "suspended")
        [form_url] = suspended["approve_at"]
        await answer_in_the_ui(client, form_url, "reject", reason="already refunded")
        final = await refund_status(client, started["refund_id"], "completed", "failed")
        assert final["outcome"] == "refund of order A-1001 declined: already refunded"


async def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "aiohttp_service.py"),
        "--port",
        str(port),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"http://127.0.0.1:{port}/refunds" in line
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(10):
                while True:
                    try:
                        async with http.post(
                            f"http://127.0.0.1:{port}/refunds", json={"order": "B-7", "amount": 5}
                        ) as response:
                            assert response.status == 202
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        await proc.wait()
    assert (tmp_path / ".graflow" / "runs").is_dir()  # the default stores, under the working directory
