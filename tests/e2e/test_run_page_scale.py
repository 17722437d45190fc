"""Run pages of large workflows over a real socket: a 1,600-task lattice (each of 40
layers linked to every task of the next: 62,400 edges) and a 10,000-task fan answer
quickly, the server keeps answering /health while it builds them, and they show a
summary (tasks per state and per layer) and a paged task table instead of a drawing.

The app runs on an event loop of its own in another thread, so a server that blocks
its loop shows here as slow answers, never as a test that stalls with it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
from aiohttp import web

from graflow_async import parallel, task, workflow
from graflow_async.define.graph import Workflow
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.records.base import MAX_TASKS
from graflow_async.web import create_app
from graflow_async.web.runs import page as runpage


@task
async def step() -> None:
    return None


def lattice(layers: int = 40, width: int = 40) -> Workflow:
    with workflow("lattice") as wf:
        rows = [[step(task_id=f"L{i}_{j}") for j in range(width)] for i in range(layers)]
        wf.add(*rows[0])
        for upper, lower in itertools.pairwise(rows):
            for a in upper:
                for b in lower:
                    a >> b
    return wf


def fan(n: int = 10_000) -> Workflow:
    with workflow("fan") as wf:
        step(task_id="start") >> parallel(*[step(task_id=f"f{i}") for i in range(n)]) >> step(task_id="end")
    return wf


@contextmanager
def served_in_thread(app: web.Application) -> Iterator[str]:
    """`app` served on 127.0.0.1 from a loop running in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started: concurrent.futures.Future[int] = concurrent.futures.Future()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(runner.addresses[0][1])
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=main, name="app-loop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{started.result(timeout=30)}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        if not thread.is_alive():
            loop.close()


@asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        yield http


async def completed_run(http: aiohttp.ClientSession, base: str, name: str) -> str:
    async with http.post(f"{base}/api/runs", json={"workflow": name}) as response:
        run_id = str((await response.json())["run_id"])
    async with asyncio.timeout(60):
        while True:
            async with http.get(f"{base}/api/runs/{run_id}") as response:
                if (await response.json())["status"] == "completed":
                    return run_id
            await asyncio.sleep(0.05)


async def page_while_probing_health(http: aiohttp.ClientSession, url: str, health: str) -> tuple[str, float, float]:
    """GET `url` (its text and seconds), asking `health` every 20 ms meanwhile (the
    slowest answer's seconds); fails after 10 s."""
    slowest = 0.0
    answered = asyncio.Event()

    async def probe() -> None:
        nonlocal slowest
        while True:
            started = time.perf_counter()
            async with http.get(health) as response:
                assert response.status == 200
            slowest = max(slowest, time.perf_counter() - started)
            answered.set()
            await asyncio.sleep(0.02)  # the probing interval

    started = time.perf_counter()
    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        prober = group.create_task(probe())
        async with http.get(url) as response:
            assert response.status == 200
            text = await response.text()
        took = time.perf_counter() - started
        answered.clear()
        await answered.wait()  # one more answer to health after the page (the probe in flight meanwhile)
        prober.cancel()
    return text, took, slowest


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-task="([^"]+)">', html)


def count_of(html: str, state: str) -> int:
    found = re.search(rf'data-count-state="{state}"[^>]*>.*?<b>(\d+)</b>', html)
    assert found, state
    return int(found.group(1))


async def test_the_page_of_a_1600_task_lattice_is_quick_and_health_answers_meanwhile() -> None:
    app = create_app(feedback_store=MemoryFeedbackStore(), workflows={"lattice": lattice()})
    with served_in_thread(app) as base:
        async with session() as http:
            run_id = await completed_run(http, base, "lattice")
            html, took, health = await page_while_probing_health(http, f"{base}/ui/runs/{run_id}", f"{base}/health")
            assert took < 2.0 and health < 2.0, (took, health)  # 288 s and as long for /health before
            assert "too large to draw" in html and "1,600 tasks in 40 layers" in html and "<svg" not in html
            layers = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td>", html)
            assert layers == [(str(k), "40") for k in range(40)]
            listed = rows(html)
            assert len(listed) == runpage.TASKS_PER_PAGE and listed[:41] == [f"L0_{j}" for j in range(40)] + ["L1_0"]
            assert 'data-paged="yes"' in html and "page 1 of 4" in html
            # a run keeps the states of its first MAX_TASKS tasks: the page says how many it cannot know
            assert (count_of(html, "done"), count_of(html, "untracked")) == (MAX_TASKS, 1600 - MAX_TASKS)
            assert f"a run keeps the states of its first {MAX_TASKS} tasks" in html
            last = await (await http.get(f"{base}/ui/runs/{run_id}", params={"page": "4"})).text()
            assert rows(last) == [f"L{i}_{j}" for i in range(37, 40) for j in range(40)][-100:]
            done = await (await http.get(f"{base}/ui/runs/{run_id}", params={"state": "done"})).text()
            assert len(rows(done)) == min(count_of(html, "done"), runpage.TASKS_PER_PAGE) > 0
            states = re.findall(
                r'<tr data-task="[^"]+">\s*<td><code>[^<]*</code></td>\s*<td><span class="state" '
                r'data-state="(\w+)"',
                done,
            )
            assert set(states) == {"done"}, states[:5]


async def test_the_page_of_a_10000_task_fan_is_quick_and_summarized() -> None:
    app = create_app(feedback_store=MemoryFeedbackStore(), workflows={"fan": fan()})
    with served_in_thread(app) as base:
        async with session() as http:
            run_id = await completed_run(http, base, "fan")
            html, took, health = await page_while_probing_health(http, f"{base}/ui/runs/{run_id}", f"{base}/health")
            assert took < 2.0 and health < 2.0, (took, health)
            assert "10,002 tasks in 3 layers" in html
            assert re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td>", html) == [("0", "1"), ("1", "10000"), ("2", "1")]
            assert rows(html)[:2] == ["start", "f0"] and len(rows(html)) == runpage.TASKS_PER_PAGE
            assert len(html) < 400_000  # a page of rows, not 10,002 of them


def test_a_small_workflow_is_still_drawn_in_full() -> None:
    view = runpage.task_view(fan(20), {"f3": {"state": "running", "attempts": 1, "duration": None}})
    assert not view.summarized and view.pages == 1 and len(view.rows) == 22
    assert '<g class="node" data-task="f3" data-state="running">' in view.svg
