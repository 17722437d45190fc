"""Hardening of the web side, over real sockets: JSON nesting is bounded, error logs
carry no local variables nor request bodies, one corrupt feedback record does not
break listings, and connections that do not send a whole request in time are closed.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from graflow_async.execute import metrics as limits
from graflow_async.feedback import FeedbackRequest, FeedbackType, FileFeedbackStore, MemoryFeedbackStore
from graflow_async.logs import library_logger
from graflow_async.web import create_app
from graflow_async.web import http as web_http

JSON = {"Content-Type": "application/json"}
LIMIT = web_http.MAX_JSON_DEPTH
SECRET = "-".join(("local", "secret", "4711"))  # built at run time: not in any source line a traceback quotes


def feedback(kind: str = "custom", fid: str = "fb-1", **kw: Any) -> FeedbackRequest:
    return FeedbackRequest(fid, "run-1", "task-a", FeedbackType(kind), "Shape?", **kw)


@asynccontextmanager
async def serving(*requests: FeedbackRequest, **kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    store = kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    for request in requests:
        await store.create(request)
    async with TestClient(TestServer(create_app(**kwargs))) as client:
        yield client


def objects(depth: int, leaf: str = "1") -> str:
    """`depth` JSON objects inside each other."""
    return '{"k":' * depth + leaf + "}" * depth


# --- JSON nesting ------------------------------------------------------------------------------------


async def test_a_3kb_body_nested_500_deep_is_refused_at_once_naming_the_limit() -> None:
    async with serving(feedback()) as client:
        bodies = {
            "/api/feedback/fb-1/respond": f'{{"custom_data": {objects(498)}}}',
            "/api/runs": f'{{"workflow": "w", "inputs": {objects(498)}}}',
        }
        for path, body in bodies.items():
            assert len(body) >= 3000
            started = time.perf_counter()
            response = await client.post(path, data=body, headers=JSON)
            assert response.status == 400
            error = (await response.json())["error"]
            assert f"more than {LIMIT} levels deep" in error and f"limit is {LIMIT}" in error
            assert time.perf_counter() - started < 1.0
        assert (await client.get("/health")).status == 200  # the server is still at work


async def test_bodies_up_to_the_limit_are_parsed_and_brackets_in_strings_do_not_count() -> None:
    async with serving(feedback(), feedback(fid="fb-2")) as client:
        at_limit = f'{{"custom_data": {objects(LIMIT - 1)}}}'  # the outer object counts too
        response = await client.post("/api/feedback/fb-1/respond", data=at_limit, headers=JSON)
        assert response.status == 200
        brackets = json.dumps({"custom_data": {"text": "[" * 5000 + "{" * 5000}})
        response = await client.post("/api/feedback/fb-2/respond", data=brackets, headers=JSON)
        assert response.status == 200
        assert (await response.json())["response"]["custom_data"]["text"].startswith("[[[")
        over = f'{{"custom_data": {objects(LIMIT)}}}'
        response = await client.post("/api/feedback/fb-1/respond", data=over, headers=JSON)
        assert response.status == 400


def test_depth_check_agrees_with_the_parser_on_awkward_input() -> None:
    assert not web_http.too_deep(b'["\\"[[[[", {"a": "]]]"}]' * 200)  # escaped quotes in strings
    assert web_http.too_deep(b"[" * 100_000)  # unbalanced: still refused before parsing
    assert web_http.too_deep(("[" * (LIMIT + 1) + "]" * (LIMIT + 1)).encode())
    assert not web_http.too_deep(("[" * LIMIT + "]" * LIMIT).encode())
    started = time.perf_counter()
    assert not web_http.too_deep(b"[" + b",".join([b"[" * 100 + b"]" * 100] * 5000) + b"]")  # ~1 MB
    assert time.perf_counter() - started < 0.5


def test_json_too_deep_is_the_one_too_deep_error_of_the_package() -> None:
    from graflow_async.wire.codec import TooDeep

    with pytest.raises(TooDeep, match=f"more than {LIMIT} levels deep"):
        web_http.parse_json("[" * (LIMIT + 1) + "]" * (LIMIT + 1))


# Every encoding `json.loads` reads (RFC 4627's UTF-8, -16 and -32), each byte order, with and without a BOM.
ENCODINGS = {
    "utf-8": ("utf-8", b""),
    "utf-8 bom": ("utf-8", codecs.BOM_UTF8),
    "utf-16-le": ("utf-16-le", b""),
    "utf-16-be": ("utf-16-be", b""),
    "utf-16-le bom": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be bom": ("utf-16-be", codecs.BOM_UTF16_BE),
    "utf-32-le": ("utf-32-le", b""),
    "utf-32-be": ("utf-32-be", b""),
    "utf-32-le bom": ("utf-32-le", codecs.BOM_UTF32_LE),
    "utf-32-be bom": ("utf-32-be", codecs.BOM_UTF32_BE),
}
# U+2200 is 22 00 or 00 22 in UTF-16: a quote byte that once threw a byte-wise scan out of step with the
# strings, so brackets after it were skipped (depth 300 parsed, depth 600 a 500); U+7B2C holds a "{" byte.
ODD = "\u2200 \u7b2c\u5b5d"


def encoded(text: str, name: str) -> bytes:
    encoding, bom = ENCODINGS[name]
    return bom + text.encode(encoding)


@pytest.mark.parametrize("name", ENCODINGS)
async def test_too_deep_bodies_get_400_in_every_encoding_the_parser_reads(name: str) -> None:
    async with serving(feedback()) as client:
        bodies = [
            (f'{{"reason": "{ODD}", "custom_data": {objects(depth)}}}', "/api/feedback/fb-1/respond")
            for depth in (LIMIT, 300, 600, 5000)
        ] + [(f'{{"workflow": "{ODD}", "inputs": {objects(600)}}}', "/api/runs"), (objects(LIMIT + 1), "/api/runs")]
        for text, path in bodies:
            response = await client.post(path, data=encoded(text, name), headers=JSON)
            assert response.status == 400, (path, text[:40])
            assert f"more than {LIMIT} levels deep" in (await response.json())["error"]
        assert (await client.get("/api/feedback/fb-1")).status == 200  # still unanswered


@pytest.mark.parametrize("name", ["utf-16-le", "utf-16-be bom", "utf-32-le bom"])
async def test_a_legitimate_body_in_utf16_or_utf32_is_parsed_as_in_utf8(name: str) -> None:
    answer = {"reason": ODD, "custom_data": {"note": "\u7b2c" * 300, "deep": json.loads(objects(LIMIT - 2))}}
    async with serving(feedback()) as client:
        body = encoded(json.dumps(answer, ensure_ascii=False), name)
        response = await client.post("/api/feedback/fb-1/respond", data=body, headers=JSON)
        assert response.status == 200, await response.text()
        got = (await response.json())["response"]
        assert (got["reason"], got["custom_data"]) == (answer["reason"], answer["custom_data"])


async def test_a_body_that_is_not_text_in_the_encoding_it_starts_in_gets_400() -> None:
    async with serving(feedback()) as client:
        for body in (b'{"custom_data": {"a": "\xff\xfe"}}', encoded('{"custom_data": {}}', "utf-16-le bom") + b"!"):
            response = await client.post("/api/feedback/fb-1/respond", data=body, headers=JSON)
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]


async def test_a_deep_answer_from_the_ui_form_is_refused_naming_the_limit() -> None:
    async with serving(feedback()) as client:
        page = await (await client.get("/ui/feedback/fb-1")).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found is not None
        form = {"csrf_token": found.group(1), "custom_data": objects(500)}
        response = await client.post("/ui/feedback/fb-1", data=form)
        assert response.status == 400
        assert f"more than {LIMIT} levels deep" in await response.text()


# --- error logs ----------------------------------------------------------------------------------------


class ExplodingStore(MemoryFeedbackStore):
    """Fails deep inside, with a secret in a local variable, as a broken backend would."""

    async def respond(self, feedback_id: str, response: Any) -> Any:
        return self._dig(400, SECRET)

    def _dig(self, depth: int, secret: str) -> Any:
        if depth:
            return self._dig(depth - 1, secret)
        raise RuntimeError("the store broke")


async def test_errors_are_logged_briefly_without_locals_or_the_body(log_capture: list[dict[str, Any]]) -> None:
    async with serving(feedback(), feedback_store=ExplodingStore()) as client:
        body = {"custom_data": {"card": "body-secret-0815"}}
        started = time.perf_counter()
        response = await client.post("/api/feedback/fb-1/respond", json=body)
        assert response.status == 500
        assert await response.json() == {"error": "internal server error", "field": None}
        assert time.perf_counter() - started < 1.0
    [entry] = [e for e in log_capture if e["event"] == "web request failed"]
    assert "exc_info" not in entry  # a renderer could show the frames' locals
    assert "RuntimeError: the store broke" in entry["exception"]
    assert len(entry["exception"]) < 10_000  # the innermost frames, not 400 of them
    logged = json.dumps(entry, default=str)
    assert SECRET not in logged and "body-secret-0815" not in logged


def test_the_library_log_renders_tracebacks_without_local_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = structlog.get_config() if structlog.is_configured() else None
    structlog.reset_defaults()  # the library's own renderer, whatever another test configured
    monkeypatch.setenv("GRAFLOW_LOG_LEVEL", "error")

    def fail(secret: str) -> None:
        raise RuntimeError("boom")

    try:
        try:
            fail(SECRET)
        except RuntimeError as exc:
            library_logger().error("it failed", exc_info=exc)
    finally:
        if saved is not None:
            structlog.configure(**saved)
    err = capsys.readouterr().err
    assert "it failed" in err and "RuntimeError: boom" in err and "in fail" in err
    assert SECRET not in err


# --- corrupt feedback records --------------------------------------------------------------------------


async def test_a_corrupt_record_file_is_skipped_and_reported_not_a_500(
    tmp_path: Path, log_capture: list[dict[str, Any]]
) -> None:
    async with FileFeedbackStore(tmp_path) as store:
        async with serving(feedback("approval"), feedback_store=store) as client:
            (tmp_path / "broken.json").write_bytes(b'{"request": {"feedback_id": "br')
            response = await client.get("/api/feedback")
            assert response.status == 200
            body = await response.json()
            assert (body["count"], body["unreadable"]) == (1, 1)
            assert [r["feedback_id"] for r in body["requests"]] == ["fb-1"]
            page = await client.get("/ui/feedback/")
            assert page.status == 200
            html = await page.text()
            assert "Shape?" in html and "1 feedback record could not be read" in html
            (tmp_path / "broken.json").unlink()
            assert "unreadable" not in await (await client.get("/api/feedback")).json()
    [warning] = [e for e in log_capture if e["event"] == "skipped an unreadable feedback record"]
    assert warning["path"] == str(tmp_path / "broken.json")


# --- requests that never arrive ------------------------------------------------------------------------


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    """A short REQUEST_TIMEOUT (read by create_app and by every body read)."""
    monkeypatch.setattr(limits, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(limits, "LINGERING_TIME", 0.2)
    return 0.5


async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, within: float) -> bytes:
    """Everything the server sends until it closes the connection (at most `within` s)."""
    try:
        async with asyncio.timeout(within):
            return await reader.read()
    finally:
        writer.close()


async def test_a_half_sent_request_head_is_closed_within_the_bound(quick: float) -> None:
    async with serving() as client:
        host, port = client.server.host, client.server.port
        reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        await writer.drain()
        assert await until_closed(reader, writer, within=5) == b""
        assert quick * 0.8 < time.perf_counter() - started < quick + 1.5
        # a request sent whole on a fresh connection is answered
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await until_closed(reader, writer, within=5)).startswith(b"HTTP/1.1 200")


async def test_a_head_trickled_a_byte_at_a_time_is_closed_within_the_bound(quick: float) -> None:
    async with serving() as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        started = time.perf_counter()

        async def trickle() -> None:
            for byte in b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)  # the trickle: a byte every 50 ms

        async with asyncio.TaskGroup() as tg:
            sending = tg.create_task(trickle())
            received = await until_closed(reader, writer, within=5)
            sending.cancel()
        assert received == b""
        assert time.perf_counter() - started < quick + 1.5


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/api/feedback/fb-1/respond", "application/json"), ("/ui/feedback/fb-1", "application/x-www-form-urlencoded")],
)
async def test_a_half_sent_body_gets_408_and_the_connection_closes(quick: float, path: str, content_type: str) -> None:
    async with serving(feedback("approval")) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        started = time.perf_counter()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: 100\r\n\r\n"
        writer.write(head.encode() + b'{"approved"')  # 11 of the 100 bytes announced
        await writer.drain()
        received = await until_closed(reader, writer, within=5)
        assert received.startswith(b"HTTP/1.1 408")
        assert time.perf_counter() - started < quick + 0.2 + 1.5  # the bound, lingering, slack
