"""JSON in and out of the REST API: bounded bodies, error bodies, status mapping."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackError,
    FeedbackNotFoundError,
    FeedbackValidationError,
)

MAX_BODY = 1024 * 1024  # bytes: larger request bodies get 413
_CHUNK = 64 * 1024


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


def feedback_status(exc: FeedbackError) -> int | None:
    """The HTTP status a store's error maps to (None: not a client error)."""
    if isinstance(exc, FeedbackValidationError):
        return 400
    if isinstance(exc, FeedbackNotFoundError):
        return 404
    if isinstance(exc, FeedbackAlreadyAnsweredError):
        return 409
    return None


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The request body; ApiError 413 beyond `limit` bytes, whatever the app's client_max_size."""
    too_large = ApiError(413, f"request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body: 415 for another content type, 413 too large, 400 unparsable."""
    if not is_json(request.content_type):
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type}")
    body = await read_body(request)
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
