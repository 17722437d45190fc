"""The feedback UI of graflow_async.web: pages, forms per type, escaping, CSRF, login."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from graflow_async.feedback import FeedbackRequest, FeedbackType, MemoryFeedbackStore
from graflow_async.web import create_app

TOKEN = "ui-token"
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def feedback(kind: str = "approval", *, fid: str = "fb-1", **kw: Any) -> FeedbackRequest:
    return FeedbackRequest(
        fid,
        kw.pop("run_id", "run-1"),
        kw.pop("task_id", "task-a"),
        FeedbackType(kind),
        kw.pop("prompt", "Deploy to production?"),
        **kw,
    )


@asynccontextmanager
async def serving(
    *requests: FeedbackRequest, **kwargs: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], MemoryFeedbackStore]]:
    store = MemoryFeedbackStore()
    for request in requests:
        await store.create(request)
    async with TestClient(TestServer(create_app(feedback_store=store, **kwargs))) as client:
        yield client, store


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def open_form(client: TestClient[Any, Any], fid: str = "fb-1") -> tuple[str, str]:
    response = await client.get(f"/ui/feedback/{fid}")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    return html, csrf_of(html)


async def submit(client: TestClient[Any, Any], fields: Any, fid: str = "fb-1") -> tuple[int, str]:
    _, token = await open_form(client, fid)
    data = [("csrf_token", token), *(fields.items() if isinstance(fields, dict) else fields)]
    response = await client.post(f"/ui/feedback/{fid}", data=data)
    return response.status, await response.text()


# --- pages -----------------------------------------------------------------------------------------


async def test_list_page_shows_pending_requests_with_their_facts_and_links():
    answered = feedback(fid="done", prompt="Old question")
    async with serving(feedback(task_id="deploy", run_id="run-77"), answered) as (client, store):
        await store.respond("done", {"approved": True})
        response = await client.get("/ui/feedback/")
        assert response.status == 200
        html = await response.text()
        assert "Deploy to production?" in html
        assert "approval" in html and "run-77" in html and "deploy" in html
        assert re.search(r"\d+ s</td>", html)  # its age
        assert 'href="/ui/feedback/fb-1"' in html
        assert "Old question" not in html
        assert (await client.get("/ui/feedback", allow_redirects=False)).headers["Location"] == "/ui/feedback/"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "script-src" not in response.headers["Content-Security-Policy"]  # no scripts at all
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_empty_list_says_so():
    async with serving() as (client, _):
        assert "No requests are waiting" in await (await client.get("/ui/feedback/")).text()


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        (
            "approval",
            None,
            [
                'name="decision" value="approve"',
                'name="decision" value="reject"',
                '<textarea id="reason" name="reason"',
                ">Approve</button>",
                ">Reject</button>",
            ],
        ),
        ("text", None, ['<textarea id="text" name="text"']),
        (
            "selection",
            ["blue", "green"],
            ['type="radio" name="selected" value="blue"', 'type="radio" name="selected" value="green"'],
        ),
        (
            "multi_selection",
            ["eu", "us"],
            [
                'type="checkbox" name="selected_multiple" value="eu"',
                'type="checkbox" name="selected_multiple" value="us"',
            ],
        ),
        ("custom", None, ['<textarea id="custom_data" name="custom_data"']),
    ],
)
async def test_the_form_fits_the_type(kind, options, expected):
    async with serving(feedback(kind, options=options)) as (client, _):
        html, _ = await open_form(client)
        assert '<form method="post"' in html and 'action="/ui/feedback/fb-1"' in html
        for snippet in expected:
            assert snippet in html
        assert ('name="decision"' in html) == (kind == "approval")


async def test_user_strings_are_escaped_everywhere():
    evil = feedback(
        "selection",
        prompt=f"Ship {XSS}?",
        options=[XSS, 'say "hi"'],
        run_id=f"run{XSS}",
        task_id=f"t{XSS}",
        metadata={XSS: XSS, "nested": {"k": XSS}},
    )
    async with serving(evil) as (client, store):
        for html in (await (await client.get("/ui/feedback/")).text(), (await open_form(client))[0]):
            assert XSS not in html
            assert "<script" not in html
            assert ESCAPED in html
        html, _ = await open_form(client)
        assert f'value="{ESCAPED}"' in html
        assert 'value="say &#34;hi&#34;"' in html
        status, done = await submit(client, {"selected": XSS})
        assert status == 200
        assert XSS not in done and ESCAPED in done
        assert (await store.get("fb-1"))[1].selected == XSS


async def test_unknown_request_is_a_404_page():
    async with serving() as (client, _):
        response = await client.get("/ui/feedback/nope")
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "Not found" in await response.text()


# --- answering -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "fields", "check"),
    [
        ("approval", None, {"decision": "approve"}, lambda a: a.approved is True and a.reason is None),
        (
            "approval",
            None,
            {"decision": "reject", "reason": "too risky"},
            lambda a: a.approved is False and a.reason == "too risky",
        ),
        ("text", None, {"text": "ship it\non friday"}, lambda a: a.text == "ship it\non friday"),
        ("selection", ["blue", "green"], {"selected": "green"}, lambda a: a.selected == "green"),
        (
            "multi_selection",
            ["eu", "us", "ap"],
            [("selected_multiple", "eu"), ("selected_multiple", "ap")],
            lambda a: a.selected_multiple == ["eu", "ap"],
        ),
        ("multi_selection", ["eu"], {}, lambda a: a.selected_multiple == []),
        (
            "custom",
            None,
            {"custom_data": '{"replicas": 3, "zones": ["a"]}'},
            lambda a: a.custom_data == {"replicas": 3, "zones": ["a"]},
        ),
    ],
)
async def test_submitting_the_form_answers_and_confirms(kind, options, fields, check):
    async with serving(feedback(kind, options=options)) as (client, store):
        fields = [*(fields.items() if isinstance(fields, dict) else fields), ("responded_by", "ana")]
        status, html = await submit(client, fields)
        assert status == 200
        assert "your answer was recorded" in html
        request, answer = await store.get("fb-1")
        assert request.status == "answered"
        assert answer is not None and check(answer)
        assert answer.responded_by == "ana"
        assert "ana" in html


@pytest.mark.parametrize(
    ("raw", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ("", "not valid JSON")],
)
async def test_custom_answer_that_is_not_a_json_object_shows_an_error(raw, message):
    async with serving(feedback("custom")) as (client, store):
        status, html = await submit(client, {"custom_data": raw})
        assert status == 400
        assert 'class="error"' in html and message in html
        assert '<textarea id="custom_data"' in html  # the form again, with what was typed
        if raw:
            assert raw.replace('"', "&#34;") in html
        assert (await store.get("fb-1"))[1] is None


async def test_invalid_choices_re_render_the_form_with_an_error():
    async with serving(feedback("selection", options=["a", "b"]), feedback(fid="fb-2")) as (client, store):
        status, html = await submit(client, {})
        assert status == 400 and "choose one of the options" in html
        status, html = await submit(client, {"selected": "zzz"})
        assert status == 400 and "must be one of the options" in html
        status, html = await submit(client, {"decision": "maybe"}, fid="fb-2")
        assert status == 400 and "choose Approve or Reject" in html
        assert (await store.get("fb-1"))[1] is None and (await store.get("fb-2"))[1] is None


async def test_answered_and_cancelled_requests_show_their_state():
    async with serving(feedback(), feedback(fid="fb-2")) as (client, store):
        status, _ = await submit(client, {"decision": "reject", "reason": "no"})
        assert status == 200
        html = await (await client.get("/ui/feedback/fb-1")).text()
        assert "Already answered" in html and "Rejected" in html and '<form method="post" class="card"' not in html
        _, token = await open_form(client, "fb-2")
        await store.cancel("fb-2")
        response = await client.post("/ui/feedback/fb-2", data={"csrf_token": token, "decision": "approve"})
        assert response.status == 409
        assert "was cancelled already" in await response.text()
        assert "This request was cancelled." in await (await client.get("/ui/feedback/fb-2")).text()


async def test_posts_without_a_valid_csrf_token_are_refused():
    async with serving(feedback()) as (client, store):
        await open_form(client)  # a session exists
        response = await client.post("/ui/feedback/fb-1", data={"decision": "approve"})
        assert response.status == 403
        html = await response.text()
        assert "expired" in html and csrf_of(html)
        response = await client.post("/ui/feedback/fb-1", data={"decision": "approve", "csrf_token": "f" * 64})
        assert response.status == 403
        async with TestClient(TestServer(client.app)) as other:  # another visitor's token
            response = await other.post(
                "/ui/feedback/fb-1", data={"decision": "approve", "csrf_token": csrf_of((await open_form(client))[0])}
            )
            assert response.status == 403
        assert (await store.get("fb-1"))[1] is None


# --- login -----------------------------------------------------------------------------------------------------


async def test_login_flow_with_a_token():
    async with serving(feedback(), auth_token=TOKEN) as (client, store):
        response = await client.get("/ui/feedback/fb-1", allow_redirects=False)
        assert response.status == 303
        location = URL(response.headers["Location"])
        assert location.path == "/ui/login" and location.query["next"] == "/ui/feedback/fb-1"
        assert "Set-Cookie" not in response.headers
        response = await client.get(response.headers["Location"])
        html = await response.text()
        assert 'name="token"' in html and 'type="password"' in html and 'value="/ui/feedback/fb-1"' in html
        response = await client.post(
            "/ui/login", data={"token": "wrong", "next": "/ui/feedback/fb-1"}, allow_redirects=False
        )
        assert response.status == 401
        assert "not valid" in await response.text()
        response = await client.post(
            "/ui/login", data={"token": TOKEN, "next": "/ui/feedback/fb-1"}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/ui/feedback/fb-1"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
        status, html = await submit(client, {"decision": "approve"})
        assert status == 200 and "your answer was recorded" in html and "Log out" in html
        assert (await store.get("fb-1"))[1].approved is True
        assert (await client.get("/api/feedback")).status == 401  # the cookie is not an API credential
        response = await client.post("/ui/logout", data={"csrf_token": csrf_of(html)}, allow_redirects=False)
        assert response.status == 303
        response = await client.get("/ui/feedback/", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/ui/login")


async def test_ui_takes_the_bearer_header_and_refuses_forged_cookies():
    async with serving(feedback(), auth_token=TOKEN) as (client, store):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = await client.get("/ui/feedback/", headers=headers)
        assert response.status == 200
        response = await client.post("/ui/feedback/fb-1", data={"decision": "approve"}, headers=headers)
        assert response.status == 200  # no ambient credential: no CSRF token needed
        assert (await store.get("fb-1"))[1].approved is True
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({"graflow_session": "abc.1700000000.deadbeef"})
        response = await client.get("/ui/feedback/", allow_redirects=False)
        assert response.status == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/ui/../../x//y", "/elsewhere"])
async def test_login_never_redirects_off_the_ui(target):
    async with serving(auth_token=TOKEN) as (client, _):
        response = await client.post("/ui/login", data={"token": TOKEN, "next": target}, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/ui/feedback/"
