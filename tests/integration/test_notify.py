"""Feedback notifications (SPEC section 5): webhook and Slack POSTs to a real HTTP server,
sent by `notify` and by a run's feedback requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from answers import answer_when_asked
from clocks import FastClock

from graflow_async import run, task, workflow
from graflow_async.clock import use_clock
from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.feedback.notify import JITTER, notify, retries


@dataclass
class Hook:
    """A real HTTP server on a free port that records each POST and answers `statuses` in turn."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append({"json": json.loads(body), "headers": dict(request.headers), "path": request.path})
        if self.delay:
            await asyncio.sleep(self.delay)  # a hook that answers slowly, for the timeout tests
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return web.json_response({"ok": status < 300}, status=status)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    recorder = Hook()
    app = web.Application()
    app.router.add_post("/hooks/{name:.+}", recorder.handle)
    server = TestServer(app)
    await server.start_server()
    recorder.url = str(server.make_url("/hooks/T000/secret"))
    try:
        yield recorder
    finally:
        await server.close()


def about(delays: list[float], nominal: list[float]) -> bool:
    """Whether `delays` are the `nominal` waits, each give or take the jitter."""
    return len(delays) == len(nominal) and all(
        n * (1 - JITTER) <= d <= n * (1 + JITTER) for d, n in zip(delays, nominal, strict=True)
    )


def request(prompt: str = "Deploy <v2> & go?", options: list[str] | None = None) -> FeedbackRequest:
    kind = FeedbackType.SELECTION if options else FeedbackType.APPROVAL
    return FeedbackRequest("fb-9", "run-3", "deploy", kind, prompt, options=options)


async def test_webhook_posts_the_event_as_json_with_the_configured_headers(hook: Hook):
    config = {"type": "webhook", "url": hook.url, "message": "Release 2.1", "headers": {"X-Hook-Token": "abc"}}
    ok = await notify(request(options=["now", "later"]), config, respond_url="https://hitl.example/ui/feedback/fb-9")
    assert ok is True
    [got] = hook.received
    assert got["json"] == {
        "event": "feedback_requested",
        "feedback_id": "fb-9",
        "run_id": "run-3",
        "task_id": "deploy",
        "feedback_type": "selection",
        "prompt": "Deploy <v2> & go?",
        "options": ["now", "later"],
        "message": "Release 2.1",
        "respond_url": "https://hitl.example/ui/feedback/fb-9",
    }
    assert got["headers"]["X-Hook-Token"] == "abc"
    assert got["headers"]["Content-Type"] == "application/json"


async def test_webhook_is_the_default_type_and_respond_url_may_be_unknown(hook: Hook):
    assert await notify(request(), {"url": hook.url}) is True
    payload = hook.received[0]["json"]
    assert payload["respond_url"] is None and payload["message"] is None and payload["options"] is None


async def test_slack_posts_readable_text_with_the_same_facts(hook: Hook):
    config = {"type": "slack", "url": hook.url, "message": "Release <2.1>"}
    ok = await notify(request(options=["now", "later"]), config, respond_url="https://hitl.example/ui/feedback/fb-9")
    assert ok is True
    payload = hook.received[0]["json"]
    assert list(payload) == ["text"]
    text = payload["text"]
    for fact in (
        "Release &lt;2.1&gt;",
        "Deploy &lt;v2&gt; &amp; go?",
        "selection",
        "now, later",
        "run-3",
        "deploy",
        "fb-9",
        "<https://hitl.example/ui/feedback/fb-9|",
    ):
        assert fact in text
    assert "<v2>" not in text  # user text cannot make Slack links or mentions


async def test_retries_after_server_errors_then_succeeds(hook: Hook):
    hook.statuses = [500, 503, 200]
    with use_clock(FastClock()) as clock:
        ok = await notify(request(), {"url": hook.url}, attempts=3, backoff=0.5)
    assert ok is True
    assert len(hook.received) == 3
    assert about(clock.delays, [0.5, 1.0])
    assert hook.received[0]["json"] == hook.received[2]["json"]


async def test_gives_up_after_n_attempts_and_returns_false_without_raising(hook: Hook, log_capture):
    hook.statuses = [502]
    with use_clock(FastClock()) as clock:
        ok = await notify(request(), {"url": hook.url}, attempts=4)
    assert ok is False
    assert len(hook.received) == 4
    assert about(clock.delays, [0.2, 0.4, 0.8])
    failures = [e for e in log_capture if e["event"] == "feedback notification failed"]
    assert len(failures) == 1 and failures[0]["log_level"] == "warning"
    assert failures[0]["attempts"] == 4 and failures[0]["outcome"] == "HTTP 502"
    assert "secret" not in repr(log_capture)  # webhook URLs hold secrets: only the origin is logged


async def test_client_errors_are_not_retried_but_429_is(hook: Hook):
    hook.statuses = [400]
    assert await notify(request(), {"url": hook.url}, attempts=3, backoff=0) is False
    assert len(hook.received) == 1
    hook.received.clear()
    hook.statuses = [429, 200]
    assert await notify(request(), {"url": hook.url}, attempts=3, backoff=0) is True
    assert len(hook.received) == 2


async def test_connection_errors_are_retried_then_reported(unused_tcp_port: int, log_capture):
    url = f"http://127.0.0.1:{unused_tcp_port}/nobody-listens"
    with use_clock(FastClock()) as clock:
        ok = await notify(request(), {"url": url}, attempts=3)
    assert ok is False
    assert about(clock.delays, [0.2, 0.4])
    [failure] = [e for e in log_capture if e["event"] == "feedback notification failed"]
    assert "connection error" in failure["outcome"]


async def test_the_per_request_timeout_is_honoured(hook: Hook):
    hook.delay = 3.0
    started = time.monotonic()
    ok = await notify(request(), {"url": hook.url}, attempts=2, timeout=0.2, backoff=0.01)
    elapsed = time.monotonic() - started
    assert ok is False
    assert len(hook.received) == 2
    assert elapsed < 1.5


@pytest.mark.parametrize(
    "config",
    [
        {"type": "email", "url": "http://127.0.0.1:9/x"},
        {"type": "webhook"},
        {"type": "slack", "url": ""},
        {"url": "ftp://example.com/hook"},
        {"url": "/relative/path"},
        {"url": "http://127.0.0.1:9/x", "headers": ["X-A: b"]},
        {"url": "http://127.0.0.1:9/x", "headers": {"X-A": 1}},
        {"url": "http://127.0.0.1:9/x", "message": 42},
        "http://127.0.0.1:9/x",
    ],
)
async def test_invalid_config_is_logged_and_returns_false(config: Any, log_capture):
    assert await notify(request(), config) is False
    [entry] = [e for e in log_capture if e["event"].startswith("feedback notification not sent")]
    assert entry["log_level"] == "warning" and entry["error"]


async def test_a_given_session_is_used_and_left_open(hook: Hook):
    async with aiohttp.ClientSession(headers={"User-Agent": "graflow-test"}) as session:
        assert await notify(request(), {"url": hook.url}, session=session) is True
        assert not session.closed
    assert hook.received[0]["headers"]["User-Agent"] == "graflow-test"


def test_retry_policy_is_a_pure_function():
    assert retries(True, 1, 3) and retries(True, 2, 3)
    assert not retries(True, 3, 3)
    assert not retries(False, 1, 3)


async def test_retry_waits_are_jittered_so_hooks_failed_together_are_not_retried_in_step(hook: Hook):
    hook.statuses = [500]
    seen = []
    for _ in range(5):
        with use_clock(FastClock()) as clock:
            assert await notify(request(), {"url": hook.url}, attempts=2, backoff=1.0) is False
        seen += clock.delays
    assert about(seen, [1.0] * 5) and len(set(seen)) > 1


# --- from a run's feedback request ------------------------------------------------------------------


async def test_notifications_are_posted_and_a_failing_hook_does_not_fail_the_task(tmp_path: Path) -> None:
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    store = MemoryFeedbackStore()

    @task(inject_context=True)
    async def ask(context) -> tuple:
        good = await context.request_approval(
            "ship?",
            timeout=5,
            notification_config={"type": "webhook", "url": f"http://{host}:{port}/hook", "message": "please look"},
        )
        bad = await context.request_approval(
            "ship again?",
            timeout=5,
            notification_config={"type": "webhook", "url": f"http://{host}:{port}/missing"},  # 404 every time
        )
        return good, bad

    with workflow("notify") as wf:
        wf.add(ask)
    try:
        answering = asyncio.create_task(answer_when_asked(store, {"approved": True}, count=2))
        result = await run(wf, feedback_store=store, checkpoint_store=tmp_path)
        await answering
    finally:
        await runner.cleanup()
    assert result.output == (True, True)
    [event] = received
    assert event["event"] == "feedback_requested" and event["prompt"] == "ship?"
    assert event["message"] == "please look" and event["run_id"] == result.run_id and event["task_id"] == "ask"
