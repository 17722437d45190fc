"""examples/deploy_approval.py end to end: started as a script, answered through the API."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_example(tmp_path: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "deploy_approval.py"),
        "--port",
        str(port),
        *args,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert "answer the approval at" in line, line
    return proc, f"http://127.0.0.1:{port}"


async def pending(http: aiohttp.ClientSession, base: str) -> dict:
    for _ in range(200):
        listing = await (await http.get(f"{base}/api/feedback")).json()
        if listing["count"]:
            return listing["requests"][0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def finish(proc: asyncio.subprocess.Process) -> dict:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_approving_through_the_api_deploys(tmp_path: Path) -> None:
    proc, base = await start_example(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            request = await pending(http, base)
            assert request["prompt"].startswith("Deploy shop-api:2.4.1 to production?")
            assert request["metadata"] == {"image": "shop-api:2.4.1", "environment": "production"}
            answered = await http.post(
                f"{base}/api/feedback/{request['feedback_id']}/respond",
                json={"approved": True, "responded_by": "ops-lead"},
            )
            assert answered.status == 200
        final = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert final == {"status": "completed", "deploy": "shop-api:2.4.1 is live in production (approved by ops-lead)"}


async def test_an_answer_after_the_timeout_resumes_the_suspended_run(tmp_path: Path) -> None:
    proc, base = await start_example(tmp_path, "--timeout", "0.3")
    try:
        async with aiohttp.ClientSession() as http:
            request = await pending(http, base)
            run_id = request["run_id"]
            for _ in range(100):  # the wait times out: the run suspends to a checkpoint
                status = await (await http.get(f"{base}/api/runs/{run_id}")).json()
                if status["status"] == "suspended":
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "suspended"
            assert [p["feedback_id"] for p in status["pending_feedback"]] == [request["feedback_id"]]
            await http.post(
                f"{base}/api/feedback/{request['feedback_id']}/respond",
                json={"approved": False, "reason": "change freeze", "responded_by": "cto"},
            )
        final = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert final["status"] == "completed"
    assert final["deploy"] == "deploy of shop-api:2.4.1 rejected by cto: change freeze"
    assert list((tmp_path / ".graflow" / "checkpoints" / run_id).glob("*.ckpt"))


async def test_the_approval_asked_on_a_redis_worker_is_answered_through_the_app(
    tmp_path: Path, workers: Any, redis_url: str, client: Any
) -> None:
    """Every task on a worker (no executor runs in the example's process); the question,
    stored in Redis by the run, is answered through the app; after a timeout the app
    resumes the suspended run on the workers."""
    [worker] = workers.start(1, "--import", "examples.deploy_approval")
    proc, base = await start_example(tmp_path, "--redis-url", redis_url, "--timeout", "0.5")
    try:
        async with aiohttp.ClientSession() as http:
            request = await pending(http, base)
            run_id = request["run_id"]
            for _ in range(100):
                status = await (await http.get(f"{base}/api/runs/{run_id}")).json()
                if status["status"] == "suspended":
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "suspended", status
            await http.post(
                f"{base}/api/feedback/{request['feedback_id']}/respond",
                json={"approved": True, "responded_by": "remote-ops"},
            )
        final = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert final == {"status": "completed", "deploy": "shop-api:2.4.1 is live in production (approved by remote-ops)"}
    assert worker.process.poll() is None  # it served the run and keeps serving
    tasks = await client.xinfo_stream("graflow:tasks")
    assert tasks["entries-added"] == 6  # build, tests, scan, approve (twice: asked, then resumed), deploy
