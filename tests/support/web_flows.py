"""Workflows the web tests serve from several processes (importable by the same names
everywhere, so a run suspended by one process resumes in another)."""

from __future__ import annotations

import asyncio
from typing import Any

from graflow_async import task, workflow


@task
async def wait_forever() -> None:
    await asyncio.Event().wait()


@task(inject_context=True)
async def ask(context: Any) -> bool:
    return await context.request_approval("Ship it?", timeout=float(await context.channel.get("wait", 0.05)))


@task
async def ship(ask: bool) -> str:
    return "shipped" if ask else "kept"


@task(inject_context=True)
async def greet(context: Any) -> str:
    return f"hello {await context.channel.get('name', 'you')}"


with workflow("stuck") as stuck:
    stuck.add(wait_forever)

with workflow("approval") as approval:
    ask >> ship

with workflow("hello") as hello:
    hello.add(greet)

WORKFLOWS = {"stuck": stuck, "approval": approval, "hello": hello}
