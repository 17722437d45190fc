"""JSON in and out of the REST API: bounded bodies, error bodies, status mapping, and
the time limits of the app's connections."""

from __future__ import annotations

import asyncio
import json
import re
import traceback
from array import array
from itertools import accumulate
from typing import Any

from aiohttp import web

from graflow_async.exceptions import (
    CorruptRecordError,
    FeedbackAlreadyAnsweredError,
    FeedbackError,
    FeedbackNotFoundError,
    FeedbackValidationError,
)
from graflow_async.execute import metrics as limits  # limits.REQUEST_TIMEOUT, read at each use (tests shorten it)
from graflow_async.execute.metrics import server_options as server_options  # its documented place
from graflow_async.wire.codec import TooDeep

MAX_BODY = 1024 * 1024  # bytes: larger request bodies get 413
MAX_JSON_DEPTH = 128  # arrays and objects inside each other: deeper request bodies get 400
# Seconds a client has to send a request's head (from connecting, or from the previous
# response: idle keep-alive connections close after as long) and then, once more, its body.
_CHUNK = 64 * 1024
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1, +1, -1, -1
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error": message, "field": field}``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def dumps(data: Any) -> str:
    # Task results and metadata may hold values JSON lacks (bytes, tuples, datetimes): show them as text.
    return json.dumps(data, default=str)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def json_error(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    response = json_response({"error": message, "field": field}, status=status)
    response.headers.update(headers)
    return response


def traceback_text(exc: BaseException, frames: int = 20, size: int = 8192) -> str:
    """A traceback for the error log: the innermost `frames` frames of each exception in
    the chain, never local variables, at most about `size` characters."""
    text = "".join(traceback.format_exception(exc, limit=-frames))
    return text if len(text) <= size else f"{text[: size // 2]}\n[...]\n{text[-size // 2 :]}"


def store_status(exc: FeedbackError | CorruptRecordError) -> int | None:
    """The HTTP status a store's error maps to (None: not a client error). A corrupt
    record is 422: the request names a record that exists but cannot be read back, which
    nothing the client sends will change (the server's log names the record)."""
    if isinstance(exc, CorruptRecordError):
        return 422
    if isinstance(exc, FeedbackValidationError):
        return 400
    if isinstance(exc, FeedbackNotFoundError):
        return 404
    if isinstance(exc, FeedbackAlreadyAnsweredError):
        return 409
    return None


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text `data` (UTF-8) nests arrays and objects more than `limit` deep, found
    without parsing it (brackets inside strings do not count), at C speed: a few ms per
    100 KB in the worst case, nothing for bodies with few brackets."""
    if sum(data.count(c) for c in _OPEN) <= limit:
        return False  # the common case: too few brackets to be that deep
    steps = array("b")  # +1 per opening bracket, -1 per closing one
    steps.frombytes(_STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > limit


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The request body; ApiError 413 beyond `limit` bytes, whatever the app's client_max_size,
    and 408 (the connection then closes) when it takes more than `REQUEST_TIMEOUT` seconds."""
    too_large = ApiError(413, f"request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.REQUEST_TIMEOUT):
            while chunk := await request.content.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {limits.REQUEST_TIMEOUT:g} seconds") from None
    return b"".join(chunks)


async def read_form(request: web.Request) -> Any:
    """`request.post()` within `REQUEST_TIMEOUT` seconds, else ApiError 408."""
    try:
        async with asyncio.timeout(limits.REQUEST_TIMEOUT):
            return await request.post()
    except TimeoutError:
        raise ApiError(408, f"the form did not arrive within {limits.REQUEST_TIMEOUT:g} seconds") from None


def parse_json(data: bytes | str) -> Any:
    """`json.loads` with nesting bounded by `MAX_JSON_DEPTH`: `TooDeep` (a ValueError)
    naming the limit, checked before parsing on the very text the parser reads (bytes
    are decoded first, as `json.loads` decodes them: brackets are counted on that text,
    never on UTF-16 or UTF-32 code units read as bytes)."""
    if isinstance(data, str):
        text, scanned = data, data.encode("utf-8", "surrogatepass")
    else:  # UTF-8, UTF-16 or UTF-32, little or big endian, with or without a byte order mark
        encoding = json.detect_encoding(data)
        text = data.decode(encoding, "surrogatepass")  # UnicodeDecodeError: a ValueError
        # UTF-8 bytes are the text already; the others are scanned in their UTF-8 form,
        # where a byte below 0x80 is always the ASCII character it looks like
        scanned = data if encoding.startswith("utf-8") else text.encode("utf-8", "surrogatepass")
    too_deep_error = TooDeep(
        f"JSON arrays and objects are nested more than {MAX_JSON_DEPTH} levels deep (the limit is {MAX_JSON_DEPTH})"
    )
    if too_deep(scanned):
        raise too_deep_error
    try:
        return json.loads(text)
    except RecursionError:  # malformed in a way the bracket count missed: still too deep
        raise too_deep_error from None


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body: 415 for another content type, 413 too large, 400 unparsable
    or nested more than `MAX_JSON_DEPTH` deep, 408 too slow to arrive."""
    if not is_json(request.content_type):
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type}")
    body = await read_body(request)
    try:
        return parse_json(body)
    except TooDeep as exc:
        raise ApiError(400, f"request body refused: {exc}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
