"""Feedback requests in Redis, shared by every process that talks to the server.

Keys, under ``<ns>:feedback:`` (``<ns>`` is the store's namespace)::

    <ns>:feedback:request:<id>      hash: request (JSON), response (JSON), status
    <ns>:feedback:index             sorted set of feedback ids by created_at
    <ns>:feedback:suspension:<run>  JSON: how to resume a suspended run
    <ns>:feedback:settled           pub/sub channel: ids just answered or cancelled
    <ns>:runs:...                   run records of the web app (see `redis_runs`)

Every key expires `ttl` seconds after its last write. Creating, answering and
cancelling are Lua scripts, so one answer wins however many processes race.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackError,
    FeedbackNotFoundError,
    FeedbackValidationError,
    TransportError,
)
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.memory import Waiters, wait_settled
from graflow_async.feedback.models import (
    ANSWERED,
    CANCELLED,
    PENDING,
    FeedbackRequest,
    FeedbackResponse,
    validate_response,
)
from graflow_async.logs import LibraryLog
from graflow_async.options import number
from graflow_async.records.redis import RedisRunRecords
from graflow_async.transports.redis.redispy import redact

DEFAULT_URL = "redis://localhost:6379/0"
_FIRST_DELAY = 0.05  # seconds between attempts to subscribe again, doubling up to 2 s
log = LibraryLog()

# KEYS: request, index. ARGV: request JSON, created_at, ttl, id. nil when created.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'request', 'response', 'status')
end
redis.call('HSET', KEYS[1], 'request', ARGV[1], 'status', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return false
"""
# KEYS: request, channel, index. ARGV: new status, response JSON ('' for none), ttl, id,
# token of this attempt (a retry after a lost reply must not lose to its own first try).
# Returns 'ok', 'missing', or the status that was there already.
_SETTLE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'pending' then
  if redis.call('HGET', KEYS[1], 'settled_by') == ARGV[5] then return 'ok' end
  return status
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'response', ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'settled_by', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 'ok'
"""


class RedisFeedbackStore(FeedbackStore):
    """Requests and answers in Redis; waiters anywhere are woken through pub/sub.

    `client` is used as is and not closed by `aclose`; otherwise the store opens a
    client for `url` and owns it. Errors talking to Redis raise `TransportError`
    naming the server.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        namespace: str = "graflow",
        ttl: float = 7 * 24 * 3600,
    ) -> None:
        if not namespace or any(c.isspace() for c in namespace):
            raise ValueError(f"invalid namespace {namespace!r}")
        ttl = number("ttl", ttl, minimum=1.0)
        self._owned = client is None
        # Retries reconnect the pooled connections a server restart left stale.
        self.client: Any = client if client is not None else Redis.from_url(
            url or DEFAULT_URL, socket_connect_timeout=5.0, retry=Retry(ExponentialBackoff(cap=1.0), 3)
        )
        self.url = _describe(self.client) if url is None else redact(url)
        self.prefix = f"{namespace}:feedback"
        self.ttl = int(ttl)
        self._runs = RedisRunRecords(self.client, namespace, self.ttl, self._mapped)
        self._create = self.client.register_script(_CREATE)
        self._settle_script = self.client.register_script(_SETTLE)
        self._waiters = Waiters()
        self._waiting: Counter[str] = Counter()
        self._listen_lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    def _request_key(self, feedback_id: str) -> str:
        return f"{self.prefix}:request:{feedback_id}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:index"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:settled"

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        try:
            data = json.dumps(request.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FeedbackValidationError(f"the request is not JSON-serializable: {exc}", field="metadata") from exc
        keys = [self._request_key(request.feedback_id), self._index]
        async with self._mapped():
            existing = await self._create(keys, [data, repr(request.created_at), self.ttl, request.feedback_id])
        return request if existing is None else _decode(request.feedback_id, existing)[0]

    async def list(self, run_id: str | None = None, status: str | None = None) -> builtins.list[FeedbackRequest]:
        async with self._mapped():
            ids = [_text(i) for i in await self.client.zrange(self._index, 0, -1)]
            async with self.client.pipeline(transaction=False) as pipe:
                for feedback_id in ids:
                    pipe.hmget(self._request_key(feedback_id), "request", "response", "status")
                rows = await pipe.execute()
            gone = [i for i, row in zip(ids, rows, strict=True) if row[0] is None]
            if gone:
                await self.client.zrem(self._index, *gone)  # expired requests
        found = [
            request for request, _ in (_decode(i, row) for i, row in zip(ids, rows, strict=True) if row[0] is not None)
            if (run_id is None or request.run_id == run_id) and (status is None or request.status == status)
        ]
        return sorted(found, key=lambda r: r.created_at)

    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        async with self._mapped():
            row = await self.client.hmget(self._request_key(feedback_id), "request", "response", "status")
        if row[0] is None:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        return _decode(feedback_id, row)

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request, _ = await self.get(feedback_id)
        if request.status != PENDING:
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {request.status}")
        answer = validate_response(request, response)
        await self._settle(feedback_id, ANSWERED, json.dumps(answer.to_dict()))
        return answer

    async def cancel(self, feedback_id: str) -> None:
        await self._settle(feedback_id, CANCELLED, "")

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        self._waiting[feedback_id] += 1
        try:
            await self._start_listening()
            return await wait_settled(self, self._waiters, feedback_id, timeout)
        finally:
            self._waiting[feedback_id] -= 1
            if self._waiting[feedback_id] <= 0:
                del self._waiting[feedback_id]

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        key = f"{self.prefix}:suspension:{run_id}"
        async with self._mapped():
            if record is None:
                await self.client.delete(key)
            else:
                await self.client.set(key, json.dumps(record), ex=self.ttl)

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        async with self._mapped():
            data = await self.client.get(f"{self.prefix}:suspension:{run_id}")
        return None if data is None else dict(json.loads(data))

    async def save_run(self, record: dict[str, Any]) -> None:
        await self._runs.save(record)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return await self._runs.get(run_id)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        return await self._runs.select(status, workflow, limit, cursor)

    async def request_run_cancel(self, run_id: str) -> None:
        await self._runs.request_cancel(run_id)

    async def aclose(self) -> None:
        async with self._listen_lock:
            listener, pubsub = self._listener, self._pubsub
            self._listener = self._pubsub = None
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if pubsub is not None:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await pubsub.aclose()
        if self._owned:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await self.client.aclose()

    async def _settle(self, feedback_id: str, status: str, response: str) -> None:
        keys = [self._request_key(feedback_id), self.channel, self._index]
        async with self._mapped():
            args: list[str | int] = [status, response, self.ttl, feedback_id, uuid.uuid4().hex]
            outcome = _text(await self._settle_script(keys, args))
        if outcome == "missing":
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        if outcome != "ok":
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {outcome}")
        self._waiters.settle(feedback_id)  # at once, without the round trip through pub/sub

    # -- pub/sub ----------------------------------------------------------------------

    async def _start_listening(self) -> None:
        """Subscribe (and wait for Redis to confirm) before the caller looks at the
        request, so that no answer published in between goes unnoticed."""
        async with self._listen_lock:
            if self._listener is not None and not self._listener.done():
                return
            pubsub = self._pubsub = self._pubsub or self.client.pubsub()
            async with self._mapped():
                await pubsub.subscribe(self.channel)
                while (message := await pubsub.get_message(timeout=5.0)) is None or message["type"] != "subscribe":
                    if message is None:
                        raise TransportError(f"Redis at {self.url} did not confirm the subscription")
            self._listener = asyncio.create_task(self._listen(pubsub), name="graflow-feedback-listener")
            self._listener.add_done_callback(self._report_failure)

    def _report_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("feedback pub/sub listener failed; waiters rely on their timeouts",
                        url=self.url, error=repr(task.exception()))

    async def _listen(self, pubsub: PubSub) -> None:
        delay = _FIRST_DELAY
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except redis_errors.TimeoutError:
                continue  # a socket timeout set on the caller's client: keep listening
            except (redis_errors.ConnectionError, OSError) as exc:
                if delay == _FIRST_DELAY:
                    log.warning("feedback pub/sub connection lost; reconnecting", url=self.url, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                with contextlib.suppress(redis_errors.ConnectionError, OSError):
                    await pubsub.subscribe(self.channel)
                continue
            if message is None:
                continue
            delay = _FIRST_DELAY
            if message["type"] == "message":
                self._waiters.settle(_text(message["data"]))
            elif message["type"] == "subscribe":
                # Subscribed again after a reconnection: answers published meanwhile
                # were missed, so every waiter looks again.
                for feedback_id in builtins.list(self._waiting):
                    self._waiters.settle(feedback_id)

    @contextlib.asynccontextmanager
    async def _mapped(self) -> AsyncIterator[None]:
        try:
            yield
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise TransportError(f"cannot reach Redis at {self.url}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise TransportError(f"Redis at {self.url} failed: {exc}") from exc


def _decode(feedback_id: str, row: builtins.list[Any]) -> tuple[FeedbackRequest, FeedbackResponse | None]:
    data, response, status = row
    try:
        request = FeedbackRequest.from_dict({**json.loads(data), "status": _text(status)})
        return request, None if response is None else FeedbackResponse.from_dict(json.loads(response))
    except (KeyError, TypeError, ValueError) as exc:
        raise FeedbackError(f"malformed feedback record {feedback_id!r} in Redis: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _describe(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
