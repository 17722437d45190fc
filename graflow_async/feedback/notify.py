"""Telling people a question waits: a webhook or Slack message when a request is made.

    ok = await notify(request, {"type": "slack", "url": "https://hooks.slack.com/...",
                                "message": "Release needs a go"}, respond_url=url)

`notify` never raises (cancellation aside): a failing hook is logged and the task
that asked goes on waiting. Connection errors, timeouts, 5xx, 408 and 429 are
retried after waits of `clock.Backoff` (doubling, with jitter, on the run's clock);
other answers end the attempt at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from graflow_async.clock import Backoff
from graflow_async.feedback.models import FeedbackRequest
from graflow_async.feedback.notify_config import check_config
from graflow_async.logs import library_logger

RETRYABLE_STATUSES = frozenset({408, 429})
JITTER = 0.2  # each wait is its nominal length +-20%, so hooks failed together are not retried in step


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where and what to POST, checked before any I/O."""

    url: str
    payload: dict[str, Any]
    headers: dict[str, str]


def prepare(request: FeedbackRequest, config: Any, respond_url: str | None = None) -> Delivery:
    """The POST to make for `config`; ValueError saying what is wrong with it."""
    kind, url, headers, message = check_config(config)
    payload = (
        webhook_payload(request, message, respond_url)
        if kind == "webhook"
        else {"text": slack_text(request, message, respond_url)}
    )
    return Delivery(url, payload, {"Content-Type": "application/json", **headers})


def webhook_payload(request: FeedbackRequest, message: str | None, respond_url: str | None) -> dict[str, Any]:
    return {
        "event": "feedback_requested",
        "feedback_id": request.feedback_id,
        "run_id": request.run_id,
        "task_id": request.task_id,
        "feedback_type": request.feedback_type.value,
        "prompt": request.prompt,
        "options": request.options,
        "message": message,
        "respond_url": respond_url,
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn gives &, < and > meaning; user text must not make links or mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(request: FeedbackRequest, message: str | None, respond_url: str | None) -> str:
    lines = [_slack_escape(message)] if message else []
    lines.append(f"*Feedback requested* ({request.feedback_type.value}): {_slack_escape(request.prompt)}")
    if request.options:
        lines.append("Options: " + ", ".join(_slack_escape(o) for o in request.options))
    lines.append(
        f"Run `{_slack_escape(request.run_id)}`, task `{_slack_escape(request.task_id)}`, "
        f"feedback id `{_slack_escape(request.feedback_id)}`"
    )
    if respond_url:
        lines.append(f"Respond: <{respond_url}|open the request>")
    return "\n".join(lines)


def retries(retryable: bool, attempt: int, attempts: int) -> bool:
    """Whether to try again after failed attempt `attempt` of `attempts` (a pure policy)."""
    return retryable and attempt < attempts


async def _post(session: aiohttp.ClientSession, delivery: Delivery, timeout: float) -> tuple[bool, bool, str]:
    """One POST: (delivered, retryable, what happened)."""
    try:
        async with session.post(
            delivery.url,
            data=json.dumps(delivery.payload, default=str),
            headers=delivery.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            await response.read()
            status = response.status
    except TimeoutError:
        return False, True, f"no answer within {timeout:g}s"
    except aiohttp.ClientConnectionError as exc:
        return False, True, f"connection error: {type(exc).__name__}: {exc}"
    except aiohttp.ClientError as exc:
        return False, False, f"{type(exc).__name__}: {exc}"
    if 200 <= status < 300:
        return True, False, f"HTTP {status}"
    return False, status >= 500 or status in RETRYABLE_STATUSES, f"HTTP {status}"


async def notify(
    request: FeedbackRequest,
    config: dict[str, Any],
    *,
    respond_url: str | None = None,
    session: aiohttp.ClientSession | None = None,
    attempts: int = 3,
    timeout: float = 5.0,
    backoff: float = 0.2,
) -> bool:
    """POST the notification `config` asks for; True once a hook answered 2xx.

    `config`: ``{"type": "webhook" | "slack", "url": ..., "message": ..., "headers": {...}}``.
    At most `attempts` tries of `timeout` seconds each, about `backoff` * 2**n seconds
    apart (`Backoff` with `JITTER`; none with `backoff=0`).
    Returns False, after logging why, when the config is invalid or every try failed.
    """
    log = library_logger().bind(feedback_id=request.feedback_id, run_id=request.run_id, task_id=request.task_id)
    try:
        delivery = prepare(request, config, respond_url)
    except ValueError as exc:
        log.warning("feedback notification not sent: invalid notification_config", error=str(exc))
        return False
    target = str(URL(delivery.url).origin())  # never log the path: webhook URLs hold secrets
    attempts = max(1, attempts)
    try:
        if session is not None:
            return await _deliver(session, delivery, attempts, timeout, backoff, log, target)
        async with aiohttp.ClientSession() as own:
            return await _deliver(own, delivery, attempts, timeout, backoff, log, target)
    except Exception as exc:  # a hook must never fail the task that asked (cancellation still propagates)
        log.error("feedback notification failed", target=target, error=repr(exc))
        return False


async def _deliver(
    session: aiohttp.ClientSession,
    delivery: Delivery,
    attempts: int,
    timeout: float,
    backoff: float,
    log: Any,
    target: str,
) -> bool:
    longest = backoff * 2 ** max(attempts - 2, 0) * (1 + JITTER)  # the last wait, jittered up
    waits = Backoff(backoff, longest, jitter=JITTER) if backoff > 0 else None
    attempt = 0
    while True:
        attempt += 1
        delivered, retryable, outcome = await _post(session, delivery, timeout)
        if delivered:
            log.info("feedback notification sent", target=target, attempt=attempt)
            return True
        if not retries(retryable, attempt, attempts):
            log.warning("feedback notification failed", target=target, attempts=attempt, outcome=outcome)
            return False
        log.info("feedback notification failed, retrying", target=target, attempt=attempt, outcome=outcome)
        if waits is not None:
            await waits.sleep()


__all__ = ["notify", "prepare", "retries", "slack_text", "webhook_payload"]
