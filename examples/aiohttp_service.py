"""An aiohttp service of your own that runs workflows and gets approvals through the
built-in UI.

The service has its own API: ``POST /refunds`` (``{"order": "A-1001", "amount": 120.0}``)
starts a refund and answers with where to follow it; ``GET /refunds/{id}`` tells how it
stands. Each refund is a workflow run

    check_order >> approve >> pay_out

started from the service's handler with `graflow_async.web.start_run`. `approve` asks
a person: the question waits in the UI mounted under ``/graflow`` (``setup``), where
``/graflow/ui/runs/{id}`` shows the run live with a link to the approval form, and a
webhook, if ``--notify-url`` is given, gets a link to the form under ``--public-url``.
If nobody answers within ``--timeout`` seconds the run suspends to a checkpoint; the
answer given later resumes it.

    python examples/aiohttp_service.py [--port 8080] [--public-url http://127.0.0.1:8080/graflow]
    curl -X POST -H 'Content-Type: application/json' -d '{"order": "A-1001", "amount": 120}' \\
         http://127.0.0.1:8080/refunds
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from aiohttp import web

from graflow_async import task, workflow
from graflow_async.feedback import FeedbackStore
from graflow_async.web import get_run, setup, start_run
from graflow_async.web.http import server_options

PREFIX = "/graflow"
SETTINGS = web.AppKey("refund settings", dict)


@task(inject_context=True)
async def check_order(context: Any) -> dict:
    order, amount = await context.channel.get("order"), float(await context.channel.get("amount"))
    await asyncio.sleep(0.05)  # look the order up
    return {"order": order, "amount": amount, "paid_with": "card"}


@task(inject_context=True)
async def approve(context: Any, check_order: dict) -> dict:
    hook = await context.channel.get("notify_url", None)
    answer = await context.request_feedback(
        "approval",
        f"Refund {check_order['amount']:.2f} EUR for order {check_order['order']}?",
        timeout=float(await context.channel.get("timeout", 3600)),
        metadata={"order": check_order["order"], "amount": check_order["amount"]},
        notification_config={"type": "webhook", "url": hook} if hook else None,
    )
    return {"approved": answer.approved, "by": answer.responded_by, "reason": answer.reason}


@task
async def pay_out(check_order: dict, approve: dict) -> str:
    if not approve["approved"]:
        return f"refund of order {check_order['order']} declined: {approve['reason'] or 'no reason given'}"
    await asyncio.sleep(0.05)  # call the payment provider
    return f"refunded {check_order['amount']:.2f} EUR to the {check_order['paid_with']} of {check_order['order']}"


with workflow("refund") as refund_workflow:
    check_order >> approve >> pay_out


async def create_refund(request: web.Request) -> web.Response:
    """``POST /refunds``: start the refund's run; 202 with where to follow it."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body") from None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("order"), str)
        or not isinstance(body.get("amount"), int | float)
    ):
        raise web.HTTPBadRequest(text='expected {"order": str, "amount": number}')
    inputs = {"order": body["order"], "amount": float(body["amount"]), **request.app[SETTINGS]}
    run_id = await start_run(request.app, "refund", inputs)
    return web.json_response(
        {"refund_id": run_id, "status_url": f"/refunds/{run_id}", "follow_at": f"{PREFIX}/ui/runs/{run_id}"},
        status=202,
    )


async def show_refund(request: web.Request) -> web.Response:
    """``GET /refunds/{id}``: the refund as the service tells it."""
    run = await get_run(request.app, request.match_info["refund_id"])
    if run is None:
        raise web.HTTPNotFound(text="no such refund")
    waiting = [f"{PREFIX}/ui/feedback/{r['feedback_id']}" for r in run["pending_feedback"]]
    outcome, error = run["results"].get("pay_out"), run["error"]
    return web.json_response({"status": run["status"], "outcome": outcome, "approve_at": waiting, "error": error})


def make_app(
    *,
    feedback_store: FeedbackStore | None = None,
    checkpoint_store: str | None = None,
    public_url: str | None = None,
    notify_url: str | None = None,
    timeout: float = 3600.0,
) -> web.Application:
    """The service: its own routes, and graflow's API and UI under ``/graflow``."""
    app = web.Application(handler_args=server_options())
    app[SETTINGS] = {"timeout": timeout, **({"notify_url": notify_url} if notify_url else {})}
    app.router.add_post("/refunds", create_refund)
    app.router.add_get("/refunds/{refund_id}", show_refund)
    setup(
        app,
        workflows={"refund": refund_workflow},
        feedback_store=feedback_store,
        checkpoint_store=checkpoint_store,
        prefix=PREFIX,
        public_url=public_url,
    )
    return app


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--public-url", help="where people reach the UI, e.g. https://refunds.example.com/graflow")
    parser.add_argument("--notify-url", help="a webhook told of each approval waiting")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a waiting run suspends")
    args = parser.parse_args()
    public_url = args.public_url or f"http://127.0.0.1:{args.port}{PREFIX}"
    app = make_app(public_url=public_url, notify_url=args.notify_url, timeout=args.timeout)
    print(f"refund service on http://127.0.0.1:{args.port}/refunds; runs at {public_url}/ui/runs/", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    cli()
