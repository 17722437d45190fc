"""Schedules in the web app (SPEC 11): ``GET /api/schedules`` over a real aiohttp server
(each schedule's timing, workflow, next tick, last run with its status and link), and
the schedules page once in headless Chromium, following the link to the run's page.
The app runs the schedules it is given, in-process, journaled in a temporary directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import schedule_flows
from aiohttp import ClientSession
from browsers import chromium, served
from playwright.async_api import Browser

from graflow_async import Schedule
from graflow_async.define.ticks import next_tick, schedule_tick_text
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.web import create_app

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = "schedules-token"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the schedules' last ticks go to .graflow/schedules here


@asynccontextmanager
async def serving(tmp_path: Path, **kwargs: Any) -> AsyncIterator[str]:
    """The app on a free port of 127.0.0.1, running two schedules: `hi` every 0.3 s and
    `nightly` at 02:30 in Berlin (which does not tick during a test)."""
    schedules = [
        Schedule(schedule_flows.hello, every=0.3, name="hi"),
        Schedule("schedule_flows:hello", "30 2 * * *", name="nightly", timezone="Europe/Berlin", catch_up=True),
    ]
    app = create_app(
        feedback_store=MemoryFeedbackStore(), checkpoint_store=str(tmp_path / "ckpt"), schedules=schedules, **kwargs
    )
    async with served(app) as base:
        yield base


async def listed(http: ClientSession, base: str, **kw: Any) -> dict[str, Any]:
    async with http.get(f"{base}/api/schedules", **kw) as response:
        assert response.status == 200 and response.content_type == "application/json"
        return dict(await response.json())


async def until_completed(http: ClientSession, base: str, **kw: Any) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            body = await listed(http, base, **kw)
            last = body["schedules"][0]["last_run"]
            if last is not None and last["status"] == "completed":
                return body
            await asyncio.sleep(0.05)


async def test_the_api_lists_each_schedule_with_its_next_tick_and_last_run(tmp_path: Path) -> None:
    async with serving(tmp_path) as base, ClientSession() as http:
        body = await until_completed(http, base)
        assert body["count"] == 2
        hi, nightly = body["schedules"]
        assert (hi["name"], hi["cron"], hi["every"], hi["timezone"]) == ("hi", None, 0.3, "UTC")
        assert hi["workflow"] == "schedule_flows:hello" and hi["catch_up"] is False
        last = hi["last_run"]
        assert (
            last["run_id"] == f"hi@{last['tick']}"
            and last["url"] == f"/ui/runs/{last['run_id'].replace(':', '%3A').replace('@', '%40')}"
        )
        assert hi["next_tick"] > last["tick"]  # one format per schedule: the text sorts by time
        async with http.get(f"{base}/api/runs/{last['run_id']}") as response:
            run = await response.json()
        assert run["status"] == "completed" and run["results"]["greet"] == f"hello world at {last['tick']}"

        assert (nightly["cron"], nightly["every"], nightly["timezone"]) == ("30 2 * * *", None, "Europe/Berlin")
        assert nightly["catch_up"] is True and nightly["last_run"] is None  # never ticked here
        schedule = Schedule(schedule_flows.hello, "30 2 * * *", timezone="Europe/Berlin")
        upcoming = next_tick(schedule, datetime.now(UTC))
        assert upcoming is not None and nightly["next_tick"] == schedule_tick_text(schedule, upcoming)


async def test_the_api_needs_the_token_when_there_is_one(tmp_path: Path) -> None:
    async with serving(tmp_path, auth_token=TOKEN) as base, ClientSession() as http:
        async with http.get(f"{base}/api/schedules") as response:
            assert response.status == 401
        body = await listed(http, base, headers={"Authorization": f"Bearer {TOKEN}"})
        assert [s["name"] for s in body["schedules"]] == ["hi", "nightly"]


async def test_an_app_without_schedules_lists_none(tmp_path: Path) -> None:
    async with served(create_app(feedback_store=MemoryFeedbackStore())) as base, ClientSession() as http:
        assert await listed(http, base) == {"count": 0, "schedules": []}
        async with http.get(f"{base}/ui/schedules/") as response:
            assert response.status == 200 and "No schedules run here" in await response.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def test_the_schedules_page_in_chromium_links_the_last_run(tmp_path: Path, browser: Browser) -> None:
    async with serving(tmp_path) as base, ClientSession() as http:
        await until_completed(http, base)
        context = await browser.new_context()
        try:
            page = await context.new_page()
            page.set_default_timeout(10_000)
            await page.goto(f"{base}/ui/runs/")
            await page.click("a.nav >> text=Schedules")  # reached from the other pages' header
            assert page.url == f"{base}/ui/schedules/"
            row = page.locator('tr[data-schedule="hi"]')
            assert "every 0.3 s" in await row.inner_text()
            assert (await row.locator(".next-tick").inner_text()).endswith("Z")
            nightly = page.locator('tr[data-schedule="nightly"]')
            assert "30 2 * * *" in await nightly.inner_text() and "Europe/Berlin" in await nightly.inner_text()
            assert "none yet" in await nightly.inner_text()
            link = row.locator("a.run-link")
            run_id = await link.inner_text()
            assert run_id.startswith("hi@")
            await link.click()
            await page.wait_for_url(f"{base}/ui/runs/**")
            assert run_id in await page.content()
        finally:
            await context.close()
