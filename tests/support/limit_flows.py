"""Tasks under flow control (SPEC 11) for the tests, in-process and on Redis workers
(``--import limit_flows``). Each task returns when it started and ended by the wall
clock and where it ran, so a test judges a limit from the tasks' own times."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from benchmarks import flow_tasks as judge
from graflow_async import Concurrency, RateLimit, Workflow, parallel, task, workflow

SPAN = 0.15  # seconds each limited task runs


def _span(t0: float, **extra: Any) -> dict[str, Any]:
    return {"start": t0, "end": time.time(), "pid": os.getpid(), **extra}


@task(limits=[Concurrency(2, key="{tenant}")])
async def per_tenant(tenant: str, i: int) -> dict[str, Any]:
    """At most 2 at a time per tenant."""
    t0 = time.time()
    await asyncio.sleep(SPAN)
    return _span(t0, tenant=tenant, i=i)


@task(limits=[Concurrency(3, name="gpu")])
async def on_gpu(i: int) -> dict[str, Any]:
    """At most 3 at a time across every run: one limit named ``gpu``."""
    t0 = time.time()
    await asyncio.sleep(SPAN)
    return _span(t0, i=i)


@task(limits=[RateLimit(5, per=1.0)])
async def rated(i: int) -> dict[str, Any]:
    """At most 5 starts in any second."""
    return _span(time.time(), i=i)


@task(limits=[Concurrency(1, key="{order.customer}")])
async def by_customer(order: Any) -> str:
    """Its key reads a field its argument has not (a dict has no attribute ``customer``)."""
    return "ran"


@task(limits=[Concurrency(2, name="held")])
async def hold(i: int, marks: str) -> dict[str, Any]:
    """Holds one of 2 ``held`` slots for a long while (until its worker is killed), noting
    that it started."""
    t0 = time.time()
    Path(marks, f"hold-{i}-{os.getpid()}").touch()
    await asyncio.sleep(float(os.environ.get("GFT_HOLD_SECONDS", "60")))
    return _span(t0, i=i)


@task(limits=[Concurrency(2, name="held")])
async def after_hold(i: int) -> dict[str, Any]:
    return _span(time.time(), i=i)


def tenants_wf(n: int, tenants: str = "ab") -> Workflow:
    with workflow(f"tenants-{n}") as wf:
        parallel(*[per_tenant(task_id=f"t{i}", tenant=tenants[i % len(tenants)], i=i) for i in range(n)])
    return wf


def _fan(name: str, each: Any, prefix: str, n: int, **args: Any) -> Workflow:
    """Workflow `name`: `n` instances of task `each` in parallel (ids `prefix`0, 1...,
    each given its `i` and `args`)."""
    with workflow(name) as wf:
        parallel(*[each(task_id=f"{prefix}{i}", i=i, **args) for i in range(n)])
    return wf


def gpu_wf(n: int, tag: str = "") -> Workflow:
    return _fan(f"gpu{tag}-{n}", on_gpu, "g", n)


def rated_wf(n: int) -> Workflow:
    return _fan(f"rated-{n}", rated, "r", n)


def customer_wf() -> Workflow:
    with workflow("customer") as wf:
        wf.add(by_customer(task_id="c", order={"id": 1}))
    return wf


def hold_wf(n: int, marks: str) -> Workflow:
    return _fan(f"hold-{n}", hold, "h", n, marks=marks)


def after_hold_wf(n: int) -> Workflow:
    return _fan(f"after-hold-{n}", after_hold, "a", n)


def most_at_once(spans: list[dict[str, Any]]) -> int:
    """The most of the tasks' spans (their own start and end) running at one instant."""
    return judge.most_at_once([(s["start"], s["end"]) for s in spans])


most_in_window = judge.most_in_window


@task
async def backlog_item(i: int) -> dict[str, Any]:
    """A task of a backlog: takes `SPAN` seconds."""
    t0 = time.time()
    await asyncio.sleep(SPAN)
    return _span(t0, i=i)


@task(priority=9)
async def urgent() -> dict[str, Any]:
    return _span(time.time())


def backlog_wf(n: int) -> Workflow:
    return _fan(f"backlog-{n}", backlog_item, "b", n)


def urgent_wf() -> Workflow:
    with workflow("urgent") as wf:
        wf.add(urgent)
    return wf
