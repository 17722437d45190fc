"""The feedback UI in a real browser: headless Chromium (Debian's) driven by Playwright.

The app runs on a real port; the test opens the list, follows the link to a pending
approval, clicks Approve and checks the store and a task waiting for the answer. If
Chromium cannot start, the test fails: it never skips. One Chromium serves the module
(its tests run on the module's event loop, which Playwright's objects are bound to);
each test gets a browser context of its own, which shares no cookies, storage or cache
with another.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from browsers import chromium, served
from playwright.async_api import Browser, Page

from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.web import create_app

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def served_store() -> AsyncIterator[tuple[str, MemoryFeedbackStore]]:
    """A MemoryFeedbackStore behind the app, served on a free port of 127.0.0.1."""
    store = MemoryFeedbackStore()
    async with served(create_app(feedback_store=store)) as base:
        yield base, store


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        yield page
    finally:
        await context.close()


async def test_approving_a_request_in_chromium(served_store, page: Page, tmp_path: Path):
    base, store = served_store
    prompt = "Ship release 2.1 to production?"
    await store.create(
        FeedbackRequest(
            "fb-browser",
            "run-b",
            "deploy",
            FeedbackType.APPROVAL,
            prompt,
            metadata={"version": "2.1"},
        )
    )
    waiter = asyncio.create_task(store.wait("fb-browser", timeout=30))

    response = await page.goto(f"{base}/ui/feedback/")
    assert response is not None and response.status == 200
    await page.get_by_role("link", name=prompt).click()
    await page.wait_for_url(f"{base}/ui/feedback/fb-browser")
    assert await page.locator(".prompt").inner_text() == prompt
    await page.get_by_label("Reason (optional)").fill("looks good")
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_role("status").wait_for()
    assert "your answer was recorded" in await page.get_by_role("status").inner_text()
    assert "Approved" in await page.locator("dl.answer").inner_text()

    shot = tmp_path / "confirmation.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 1000

    answer = await asyncio.wait_for(waiter, 5)
    assert answer.approved is True and answer.reason == "looks good"
    request, stored = await store.get("fb-browser")
    assert request.status == "answered"
    assert stored is not None and stored.approved is True


async def test_a_waiting_run_completes_when_approved_in_chromium(served_store, page: Page, tmp_path: Path):
    from graflow_async import run, task, workflow

    base, store = served_store

    @task(inject_context=True)
    async def gate(context) -> bool:
        return await context.request_approval("Promote build 77 to staging?", timeout=30)

    @task
    async def promote(gate: bool) -> str:
        return "promoted" if gate else "held back"

    with workflow("promote") as wf:
        gate >> promote
    running = asyncio.create_task(run(wf, feedback_store=store, checkpoint_store=tmp_path / "ckpt"))

    await page.goto(f"{base}/ui/feedback/")
    link = page.get_by_role("link", name="Promote build 77 to staging?")
    for _ in range(100):  # the run asks within a few milliseconds; reload until listed
        if await link.count():
            break
        await asyncio.sleep(0.05)
        await page.reload()
    await link.click()
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_role("status").wait_for()
    await page.screenshot(path=str(tmp_path / "run-approved.png"), full_page=True)

    result = await asyncio.wait_for(running, 10)
    assert result.status == "completed" and result.output == "promoted"
    assert (tmp_path / "run-approved.png").stat().st_size > 1000


async def test_a_run_is_followed_live_and_approved_from_its_page_in_chromium(page: Page, tmp_path: Path):
    """Start a run, watch a task turn done on the run's page (live, through the event
    stream), answer its approval through the page's link, see the run complete."""
    import aiohttp

    from graflow_async import task, workflow

    gate = asyncio.Event()

    @task
    async def build() -> str:
        await gate.wait()
        return "image:7"

    @task(inject_context=True)
    async def approve(context, build: str) -> bool:
        return await context.request_approval(f"Deploy {build}?", timeout=30)

    @task
    async def deploy(approve: bool) -> str:
        return "deployed" if approve else "held"

    with workflow("deploy") as wf:
        build >> approve >> deploy
    runner = web.AppRunner(
        create_app(
            workflows={"deploy": wf}, feedback_store=MemoryFeedbackStore(), checkpoint_store=str(tmp_path / "ckpt")
        )
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/runs", json={"workflow": "deploy"}) as response:
                run_id = (await response.json())["run_id"]

            await page.goto(f"{base}/ui/runs/")
            assert await page.locator(f'tr[data-run="{run_id}"] .status').inner_text() == "running"
            runs_shot = tmp_path / "runs-page.png"
            await page.screenshot(path=str(runs_shot), full_page=True)
            await page.locator(f'a[href="/ui/runs/{run_id}"]').click()
            await page.wait_for_url(f"{base}/ui/runs/{run_id}")

            state = page.locator('tr[data-task="build"] .state')
            assert await state.inner_text() == "running"
            gate.set()  # build finishes while the page is open: the stream turns it done
            await page.locator('tr[data-task="build"] .state[data-state="done"]').wait_for()
            await page.locator('svg.graph .node[data-task="build"][data-state="done"]').wait_for(state="attached")
            await page.wait_for_function(
                "document.querySelector('[data-count-state=\"done\"] b').textContent === '1'"
            )  # counted live
            link = page.get_by_role("link", name="Deploy image:7?")
            await link.wait_for()  # added live when the task asked
            assert await page.locator('tr[data-task="approve"] .state').inner_text() == "waiting"
            run_shot = tmp_path / "run-page.png"
            await page.screenshot(path=str(run_shot), full_page=True)

            await link.click()
            await page.get_by_role("button", name="Approve").click()
            await page.get_by_role("status").wait_for()
            assert "your answer was recorded" in await page.get_by_role("status").inner_text()

            await page.goto(f"{base}/ui/runs/{run_id}")
            await page.locator('#run-status[data-status="completed"]').wait_for()
            async with http.get(f"{base}/api/runs/{run_id}") as response:
                body = await response.json()
        assert body["status"] == "completed" and body["results"]["deploy"] == "deployed"
        assert await page.locator('tr[data-task="deploy"] .state').inner_text() == "done"
        for shot in (runs_shot, run_shot):
            data = shot.read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    finally:
        await runner.cleanup()


async def test_a_large_run_is_summarized_and_paged_and_its_counts_follow_it_live(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A 402-task fan is too large to draw: its page shows tasks per layer and state and
    a table of 100 tasks a page; as the run goes on, the counts change live and the
    rows of this page turn done, while tasks of other pages add no rows."""
    from graflow_async import parallel, task, workflow
    from graflow_async.web.runs import page as runpage

    monkeypatch.setattr(runpage, "TASKS_PER_PAGE", 100)
    gate = asyncio.Event()

    @task
    async def opener() -> None:
        await gate.wait()

    @task
    async def member() -> None:
        return None

    with workflow("wide") as wf:
        opener >> parallel(*[member(task_id=f"m{i:03}") for i in range(400)]) >> member(task_id="closer")
    runner = web.AppRunner(create_app(workflows={"wide": wf}, feedback_store=MemoryFeedbackStore()))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        import aiohttp

        async with aiohttp.ClientSession() as http, http.post(f"{base}/api/runs", json={"workflow": "wide"}) as r:
            run_id = (await r.json())["run_id"]
        await page.goto(f"{base}/ui/runs/{run_id}")
        assert "too large to draw" in await page.locator("#graph-summary").inner_text()
        assert await page.locator("svg.graph").count() == 0
        assert await page.locator("#task-rows tr").count() == 100
        assert await page.locator('[data-count-state="pending"] b').inner_text() == "401"
        assert await page.locator('[data-count-state="done"]').is_hidden()
        gate.set()
        await page.locator('#run-status[data-status="completed"]').wait_for()
        await page.wait_for_function("document.querySelector('[data-count-state=\"done\"] b').textContent === '402'")
        assert await page.locator('[data-count-state="pending"]').is_hidden()
        assert await page.locator('#task-rows .state[data-state="done"]').count() == 100
        assert await page.locator("#task-rows tr").count() == 100  # none added for tasks of other pages
        await page.get_by_role("link", name="next").click()
        await page.wait_for_url(f"{base}/ui/runs/{run_id}?page=2")
        assert await page.locator("#task-rows tr").first.get_attribute("data-task") == "m099"
    finally:
        await runner.cleanup()
