"""The run page shows what tasks stream, live (SPEC 12), in headless Chromium: text
chunks appended as they come, while the run is still running; a screenshot is saved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from browsers import chromium, served
from playwright.async_api import Browser

from graflow_async import Workflow, task, workflow
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.web import create_app

pytestmark = pytest.mark.asyncio(loop_scope="module")
WORDS = 40


def slow_speaker() -> Workflow:
    with workflow("speaker") as wf:

        @task(inject_context=True)
        async def answer(context: Any) -> str:
            for i in range(WORDS):
                await context.stream(f"w{i} ")
                await asyncio.sleep(0.05)
            await context.stream({"tokens": WORDS})
            return "answered"

        wf.add(answer)
    return wf


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def test_the_run_page_shows_streamed_text_live(tmp_path: Path, browser: Browser) -> None:
    app = create_app(workflows={"speaker": slow_speaker()}, feedback_store=MemoryFeedbackStore())
    context = await browser.new_context()
    try:
        async with served(app) as base:
            async with ClientSession() as http, http.post(f"{base}/api/runs", json={"workflow": "speaker"}) as started:
                run_id = (await started.json())["run_id"]
            page = await context.new_page()
            page.set_default_timeout(10_000)
            await page.goto(f"{base}/ui/runs/{run_id}")
            text = page.locator('#stream-list pre[data-task="answer"]')
            await page.wait_for_function(
                "() => (document.querySelector('#stream-list pre')?.textContent || '').includes('w5 ')"
            )
            assert await page.locator("#run-status").inner_text() == "running"  # shown while it streams
            partial = await text.inner_text()
            assert partial.startswith("w0 w1 w2 w3 w4 w5") and f"w{WORDS - 1} " not in partial
            await page.screenshot(path=str(tmp_path / "streaming.png"), full_page=True)
            await page.wait_for_function("() => document.getElementById('run-status').textContent === 'completed'")
            final = await text.inner_text()
            assert final.startswith(" ".join(f"w{i}" for i in range(WORDS)))
            assert final.rstrip().endswith('{"tokens":40}')  # a value that is not text: a JSON line
            assert (tmp_path / "streaming.png").stat().st_size > 1000
    finally:
        await context.close()
