"""What a `notification_config` must hold, checked where a task asks (no I/O, no aiohttp),
and where the request can be answered (`respond_url`)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, urlsplit

from graflow_async.exceptions import FeedbackValidationError

KINDS = ("webhook", "slack")


def check_config(config: Any) -> tuple[str, str, dict[str, str], str | None]:
    """`config`'s type, url, headers and message; `FeedbackValidationError` (a ValueError)
    naming ``notification_config`` and saying what is wrong with it. Used when a task
    asks, so a bad configuration fails the call instead of a notification later."""

    def bad(reason: str) -> FeedbackValidationError:
        return FeedbackValidationError(f"notification_config: {reason}", field="notification_config")

    if not isinstance(config, dict):
        raise bad(f"must be a dict, got {type(config).__name__}")
    kind = config.get("type", "webhook")
    if kind not in KINDS:
        raise bad(f"unknown notification type {kind!r} (use one of: {', '.join(KINDS)})")
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise bad("needs a 'url'")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise bad(f"invalid url: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise bad("the url must be an absolute http(s) URL")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise bad("'headers' must map strings to strings")
    message = config.get("message")
    if message is not None and not isinstance(message, str):
        raise bad("'message' must be a string")
    return kind, url, headers, message


#: The public URL of the web app (its prefix included) that serves the run's requests,
#: set by the app for the runs it drives (``setup(..., public_url=...)``).
PUBLIC_URL: ContextVar[str | None] = ContextVar("graflow_async_public_url", default=None)


def check_public_url(url: Any) -> str:
    """`url` without a trailing slash; ValueError unless an absolute http(s) URL with no
    query or fragment."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"public_url must be an absolute http(s) URL, got {url!r}")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        raise ValueError(f"public_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise ValueError(f"public_url must be an absolute http(s) URL without query or fragment, got {url!r}")
    return url.strip().rstrip("/")


def respond_url(feedback_id: str) -> str | None:
    """The UI page of request `feedback_id` under the current `PUBLIC_URL`, if one is set."""
    base = PUBLIC_URL.get()
    return None if base is None else f"{base}/ui/feedback/{quote(feedback_id, safe='')}"
