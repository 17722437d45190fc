"""An app serving runs in a process of its own, for tests that share its stores or kill it.

    python tests/support/web_app_process.py STORE CHECKPOINTS [LEASE_SECONDS]

STORE is a directory (a `FileFeedbackStore`) or ``redis://host:port/db#namespace``.
Prints ``port N`` once it serves on 127.0.0.1, then serves until killed.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web
from web_flows import WORKFLOWS

from graflow_async.feedback import FeedbackStore, FileFeedbackStore
from graflow_async.web import create_app
from graflow_async.web.runs import state as runstate


def open_store(spec: str) -> FeedbackStore:
    if spec.startswith("redis://"):
        from graflow_async.feedback import RedisFeedbackStore

        url, _, namespace = spec.partition("#")
        return RedisFeedbackStore(url, namespace=namespace or "graflow")
    return FileFeedbackStore(spec)


async def main(store_spec: str, checkpoints: str, lease: float | None) -> None:
    if lease is not None:
        runstate.LEASE_SECONDS = lease
    app = create_app(workflows=WORKFLOWS, feedback_store=open_store(store_spec), checkpoint_store=checkpoints)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"port {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
