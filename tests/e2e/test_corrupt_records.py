"""Corrupt records behind the web app (SPEC sections 5 and 8), over the file and Redis
stores: every endpoint and page answers sensibly and never with a 500. Listings skip
what cannot be read and count it (``unreadable``); reading, answering, cancelling or
following a record that cannot be read answers 422 with a JSON error (an error page in
the UI); no answer and no log line holds the record's content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from feedback_backends import Damage, OverSharedBackends

from graflow_async.feedback import FeedbackStore
from graflow_async.feedback.conformance import ask
from graflow_async.feedback.conformance_corrupt import MARK
from graflow_async.records.conformance import record
from graflow_async.web import create_app

Client = TestClient[Any, Any]


async def answer(client: Client, method: str, path: str, status: int, **kwargs: Any) -> str:
    response = await client.request(method, path, **kwargs)
    body = await response.text()
    assert response.status == status, (method, path, response.status, body[:500])
    assert MARK not in body
    return body


class TestCorruptRecordsOverHttp(OverSharedBackends):
    @pytest.fixture
    async def client(self, store: FeedbackStore) -> AsyncIterator[Client]:
        async with TestClient(TestServer(create_app(feedback_store=store))) as client:
            yield client

    @pytest.fixture
    async def damaged(self, store: FeedbackStore, damage: Damage, request: pytest.FixtureRequest) -> None:
        """A good request and run beside a corrupt request ("bad"), run record ("bad-run")
        and suspension of a run that has no record ("gone-run")."""
        how = request.param
        await store.create(ask("good", created_at=1.0))
        await store.save_run(record("good-run", started_at=1.0))
        await damage("request", "bad", how)
        await damage("run", "bad-run", how)
        await damage("suspension", "gone-run", "huge" if how == "other-id" else how)

    @pytest.mark.parametrize("damaged", ["not-json", "wrong-types", "huge", "wrong-kind", "other-id"], indirect=True)
    async def test_the_api_skips_what_it_cannot_read_and_answers_422_for_it(
        self, client: Client, damaged: None, log_capture: list[dict[str, Any]]
    ) -> None:
        for query in ("", "?status=all", "?run_id=run-1"):
            body = await (await client.get(f"/api/feedback{query}")).json()
            assert ([r["feedback_id"] for r in body["requests"]], body["unreadable"]) == (["good"], 1)
        body = await (await client.get("/api/runs")).json()
        assert ([r["run_id"] for r in body["runs"]], body["unreadable"]) == (["good-run"], 1)
        assert "good" in await answer(client, "GET", "/api/feedback/good", 200)
        assert "good-run" in await answer(client, "GET", "/api/runs/good-run", 200)
        for method, path, kwargs in [
            ("GET", "/api/feedback/bad", {}),
            ("POST", "/api/feedback/bad/respond", {"json": {"approved": True}}),
            ("DELETE", "/api/feedback/bad", {}),
            ("GET", "/api/runs/bad-run", {}),
            ("POST", "/api/runs/bad-run/cancel", {}),
            ("GET", "/api/runs/bad-run/events", {}),
            ("GET", "/api/runs/gone-run", {}),
        ]:
            response = await client.request(method, path, **kwargs)
            body = await response.json()
            assert response.status == 422, (method, path, body)
            assert set(body) == {"error", "field"} and "cannot be read" in body["error"]
            assert MARK not in str(body)
        assert (await client.post("/api/feedback/bad/respond", data="{")).status == 415  # the request first
        assert not [e for e in log_capture if e["event"] == "web request failed"]  # no 500
        assert MARK not in repr(log_capture)

    @pytest.mark.parametrize("damaged", ["not-json", "wrong-kind"], indirect=True)
    async def test_the_ui_lists_around_what_it_cannot_read_and_shows_422_for_it(
        self, client: Client, damaged: None, log_capture: list[dict[str, Any]]
    ) -> None:
        listing = await answer(client, "GET", "/ui/feedback/", 200)
        assert "1 feedback record could not be read" in listing and "deploy?" in listing
        runs = await answer(client, "GET", "/ui/runs/", 200)
        assert "1 run record could not be read" in runs and "good-run" in runs
        for method, path, kwargs in [
            ("GET", "/ui/feedback/bad", {}),
            ("POST", "/ui/feedback/bad", {"data": {"decision": "approve"}}),
            ("GET", "/ui/runs/bad-run", {}),
            ("GET", "/ui/runs/bad-run/events", {}),
            ("GET", "/ui/runs/gone-run", {}),
        ]:
            page = await answer(client, method, path, 422, **kwargs)
            assert "Unreadable" in page and "cannot be read" in page
        assert not [e for e in log_capture if e["event"] == "web request failed"]
        assert MARK not in repr(log_capture)
