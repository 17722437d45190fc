"""Deployment approval: a person approves a production deploy through the web UI.

    build >> (unit_tests | security_scan) >> approve >> deploy

`approve` asks for an approval with `context.request_feedback`. The script serves the
feedback REST API and UI (``graflow_async.web``), starts the run through the app, prints
the UI address, and waits: answer in the browser (Approve / Reject), or with

    curl -X POST -H 'Content-Type: application/json' -d '{"approved": true}' \\
         http://127.0.0.1:8080/api/feedback/<feedback_id>/respond

If nobody answers within `--timeout` seconds the run suspends to a checkpoint and
releases its task; the answer given later still resumes it (the app resumes suspended
runs it knows the workflow of). Run it with
``python examples/deploy_approval.py [--port 8080] [--timeout 600]``.

With ``--redis-url`` every task runs on Redis workers, `approve` included: the task on
its worker asks, the run stores the question in a `RedisFeedbackStore` on the same
server (which the app serves), and the answer given in the browser wakes the task on
its worker. From the repository's root::

    python -m graflow_async worker --redis-url redis://localhost:6379/0 --import examples.deploy_approval
    python -m examples.deploy_approval --redis-url redis://localhost:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import sys

from aiohttp import web

from graflow_async import task, workflow
from graflow_async.web import create_app


@task
async def build() -> dict:
    await asyncio.sleep(0.1)
    return {"image": "shop-api:2.4.1", "digest": "sha256:5e1f..."}


@task
async def unit_tests(build: dict) -> str:
    await asyncio.sleep(0.1)
    return "412 passed"


@task
async def security_scan(build: dict) -> str:
    await asyncio.sleep(0.1)
    return "no known vulnerabilities"


@task(inject_context=True)
async def approve(context, build: dict, unit_tests: str, security_scan: str) -> dict:
    timeout = float(await context.channel.get("approval_timeout", 600))
    answer = await context.request_feedback(
        "approval",
        f"Deploy {build['image']} to production? Tests: {unit_tests}; scan: {security_scan}.",
        timeout=timeout,
        metadata={"image": build["image"], "environment": "production"},
    )
    return {"approved": answer.approved, "by": answer.responded_by, "reason": answer.reason}


@task
async def deploy(build: dict, approve: dict) -> str:
    if not approve["approved"]:
        return f"deploy of {build['image']} rejected by {approve['by'] or 'someone'}: {approve['reason'] or '-'}"
    await asyncio.sleep(0.1)
    return f"{build['image']} is live in production (approved by {approve['by'] or 'someone'})"


with workflow("deploy") as deploy_workflow:
    build >> (unit_tests | security_scan) >> approve >> deploy


async def main(port: int, timeout: float, redis_url: str | None = None) -> dict:
    async with contextlib.AsyncExitStack() as stack:
        if redis_url is None:
            app = create_app(workflows={"deploy": deploy_workflow})
        else:
            app = await remote_app(redis_url, stack)
        return await serve_and_follow(app, port, timeout)
    raise AssertionError("unreachable")


async def remote_app(redis_url: str, stack: contextlib.AsyncExitStack) -> web.Application:
    """The app, its runs on Redis workers and its questions in Redis."""
    from graflow_async.feedback.redis import RedisFeedbackStore
    from graflow_async.transports import RedisStreamsTransport

    transport = await stack.enter_async_context(RedisStreamsTransport(redis_url))
    store = await stack.enter_async_context(RedisFeedbackStore(redis_url))
    importable = importlib.import_module("examples.deploy_approval").deploy_workflow  # as workers import it
    return create_app(workflows={"deploy": importable}, feedback_store=store, transport=transport)


async def serve_and_follow(app: web.Application, port: int, timeout: float) -> dict:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        from aiohttp import ClientSession

        async with ClientSession() as http:
            started = await http.post(
                f"{base}/api/runs", json={"workflow": "deploy", "inputs": {"approval_timeout": timeout}}
            )
            run_id = (await started.json())["run_id"]
            print(f"run {run_id} started; answer the approval at {base}/ui/feedback/", flush=True)
            while True:  # follow the run as a client would
                status = await (await http.get(f"{base}/api/runs/{run_id}")).json()
                if status["status"] in ("completed", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.2)
        print(json.dumps({"status": status["status"], "deploy": status["results"].get("deploy")}), flush=True)
        return status
    finally:
        await runner.cleanup()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait before suspending")
    parser.add_argument("--redis-url", help="run every task on Redis workers importing examples.deploy_approval")
    args = parser.parse_args()
    status = asyncio.run(main(args.port, args.timeout, args.redis_url))
    sys.exit(0 if status["status"] == "completed" else 1)


if __name__ == "__main__":
    cli()
