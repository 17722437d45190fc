"""Feedback requests, suspensions and run records in Redis, shared by every process that
talks to the server. The keys are named in `transports.keys` (``<ns>:feedback:...``
and ``<ns>:runs:...``).

Commands go through the transport's connection layer (`RedisConnection`: outages are
waited out, refusals raised as `Refused`, a `TransportError`); redis-py's client is
used for the pub/sub subscription only (`redis_listen`). Every key expires `ttl`
seconds after its last write. Creating, answering and cancelling are Lua scripts
(sent by digest), so one answer wins however many processes race; reads go through
`records.redis_read`, which looks at a key's type and size before reading it, so a
request held under another type or too large is corrupt, not a failure of the listing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from graflow_async.exceptions import (
    CorruptRecordError,
    FeedbackAlreadyAnsweredError,
    FeedbackCorruptError,
    FeedbackNotFoundError,
)
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.models import ANSWERED, CANCELLED, PENDING, FeedbackRequest, FeedbackResponse
from graflow_async.feedback.models import validate_response as validate
from graflow_async.feedback.redis_listen import SettledListener
from graflow_async.feedback.stored import (
    MAX_RECORD_BYTES,
    MAX_SUSPENSION_BYTES,
    check_suspension,
    decode_suspension,
    decode_text,
    encode_request,
    encode_response,
)
from graflow_async.feedback.waiters import Waiters, wait_settled
from graflow_async.logs import as_text
from graflow_async.options import number
from graflow_async.records.contract import DelegatedRunRecords
from graflow_async.records.corrupt import Listing, Reports
from graflow_async.records.redis import RedisRunRecords
from graflow_async.records.redis_read import LUA_READ, Found, Unreadable, read, row
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import MalformedReply, Refused
from graflow_async.transports.redis.scripts import Script

DEFAULT_URL = "redis://localhost:6379/0"
FIELDS = ("request", "response", "status")
_BATCH = 200
Row = tuple[FeedbackRequest, FeedbackResponse | None]

# KEYS: request, index. ARGV: request JSON, created_at, ttl, id, bound in bytes.
# {0} when created; else what `read` finds at the request; {4} when the index is not a sorted set.
_CREATE = Script(
    LUA_READ
    + """
local index = redis.call('TYPE', KEYS[2])['ok']
if index ~= 'none' and index ~= 'zset' then return {4} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return read(KEYS[1], tonumber(ARGV[5]), 'hash', {'request', 'response', 'status'})
end
redis.call('HSET', KEYS[1], 'request', ARGV[1], 'status', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {0}
"""
)
# KEYS: request, channel, index. ARGV: new status, response JSON ('' for none), ttl, id,
# token of this attempt (an attempt sent again after a lost answer must not lose to itself).
# Returns 'ok', 'missing', 'corrupt', or the status that was there already.
_SETTLE = Script("""
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return 'missing' end
if kind ~= 'hash' then return 'corrupt' end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'pending' and status ~= 'answered' and status ~= 'cancelled' then return 'corrupt' end
if status ~= 'pending' then
  if redis.call('HGET', KEYS[1], 'settled_by') == ARGV[5] then return 'ok' end
  return status
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'response', ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'settled_by', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('TYPE', KEYS[3])['ok'] == 'zset' then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 'ok'
""")


class RedisFeedbackStore(DelegatedRunRecords, FeedbackStore):
    """Requests and answers in Redis; waiters anywhere are woken through pub/sub.

    Commands go to `connection` when given (a transport's, shared: its outages are the
    transport's), else to a `RedisConnection` on `client` when given (its pool carries
    the commands; a client that decodes responses lends its settings to a twin that does
    not), else on `url`. A given connection or client is not closed by `aclose`. The
    first contact with Redis fails fast with `TransportError` naming the server; later
    outages are waited out.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        namespace: str = "graflow",
        ttl: float = 7 * 24 * 3600,
        connection: RedisConnection | None = None,
    ) -> None:
        self.keys = Keys(namespace)  # ValueError for an invalid namespace
        self.ttl = int(number("ttl", ttl, minimum=1.0))
        self._owned: list[Any] = []  # what aclose closes
        if connection is None:
            connection = RedisConnection(url or DEFAULT_URL, client=_raw(client, self._owned))
            self._owned.insert(0, connection)
        self.conn = connection
        self.url = connection.url
        self.run_records = RedisRunRecords(connection, self.keys, self.ttl)
        self._waiters = Waiters()
        self._waiting: Counter[str] = Counter()
        self._listener = SettledListener(connection, self.keys.feedback_settled, self._waiters, lambda: self._waiting)
        self._reports = Reports("skipped an unreadable feedback record")

    @property
    def channel(self) -> str:
        return self.keys.feedback_settled

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        data = encode_request(request)
        keys = [self.keys.feedback_request(request.feedback_id), self.keys.feedback_index]
        args = [data, repr(request.created_at), self.ttl, request.feedback_id, MAX_RECORD_BYTES]
        found = await _CREATE(self.conn, keys, args, parse=_created)
        if found is _INDEX_CORRUPT:
            index = self.keys.feedback_index
            self._reports.report(index, "WRONGTYPE", "the index holds another type", key=index)
            raise FeedbackCorruptError(request.feedback_id, "the index of feedback requests holds another type")
        if found is None:
            return decode_text(data, None, PENDING, request.feedback_id)[0]  # a copy, as stored
        return self._decode(request.feedback_id, found)[0]

    async def list(self, run_id: str | None = None, status: str | None = None) -> Listing[FeedbackRequest]:
        try:
            ids = await self.conn.call("ZRANGE", self.keys.feedback_index, 0, -1, parse=_members)
        except Refused as exc:
            if exc.code != "WRONGTYPE":
                raise
            index = self.keys.feedback_index
            self._reports.report(index, "WRONGTYPE", "the index holds another type", key=index)
            return Listing((), [index])
        found: list[FeedbackRequest] = []
        skipped: list[str] = []
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            rows = await read(
                self.conn,
                [self.keys.feedback_request(i) for i in batch],
                most=MAX_RECORD_BYTES,
                kind="hash",
                fields=FIELDS,
            )
            gone = [i for i, value in zip(batch, rows, strict=True) if value is None]
            for feedback_id, value in zip(batch, rows, strict=True):
                if feedback_id in gone:
                    continue
                try:
                    request = self._decode(feedback_id, value)[0]
                except FeedbackCorruptError:
                    skipped.append(feedback_id)
                    continue
                if (run_id is None or request.run_id == run_id) and (status is None or request.status == status):
                    found.append(request)
            if gone:
                await self.conn.call("ZREM", self.keys.feedback_index, *gone)  # expired requests
        return Listing(sorted(found, key=lambda r: r.created_at), skipped)

    async def get(self, feedback_id: str) -> Row:
        [found] = await read(
            self.conn, [self.keys.feedback_request(feedback_id)], most=MAX_RECORD_BYTES, kind="hash", fields=FIELDS
        )
        if found is None:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        return self._decode(feedback_id, found)

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request, _ = await self.get(feedback_id)
        if request.status != PENDING:
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {request.status}")
        answer = validate(request, response)
        await self._settle(feedback_id, ANSWERED, encode_response(answer))
        return answer

    async def cancel(self, feedback_id: str) -> None:
        request, _ = await self.get(feedback_id)  # a corrupt record is not settled
        if request.status != PENDING:
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {request.status}")
        await self._settle(feedback_id, CANCELLED, "")

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        self._waiting[feedback_id] += 1
        try:
            await self._listener.start()
            return await wait_settled(self, self._waiters, feedback_id, timeout)
        finally:
            self._waiting[feedback_id] -= 1
            if self._waiting[feedback_id] <= 0:
                del self._waiting[feedback_id]

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        key = self.keys.suspension(run_id)
        if record is None:
            await self.conn.call("DEL", key)
        else:
            await self.conn.call("SET", key, check_suspension(record), "EX", self.ttl)

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        key = self.keys.suspension(run_id)
        [found] = await read(self.conn, [key], most=MAX_SUSPENSION_BYTES)
        try:
            if isinstance(found, Unreadable):
                raise CorruptRecordError("suspension", run_id, found.reason)
            return None if found is None or found[0] is None else decode_suspension(found[0], run_id)
        except CorruptRecordError as exc:
            self._reports.report(key, _version(found), exc.reason, key=key)
            raise

    async def aclose(self) -> None:
        await self._listener.aclose()
        for owned in self._owned:
            await owned.aclose()
        self._owned.clear()

    async def _settle(self, feedback_id: str, status: str, response: str) -> None:
        keys = [self.keys.feedback_request(feedback_id), self.keys.feedback_settled, self.keys.feedback_index]
        args: list[str | int] = [status, response, self.ttl, feedback_id, uuid.uuid4().hex]
        outcome = as_text(await _SETTLE(self.conn, keys, args, parse=_word))
        if outcome == "missing":
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}")
        if outcome == "corrupt":
            raise FeedbackCorruptError(feedback_id, "its key holds no feedback record")
        if outcome != "ok":
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {outcome}")
        self._waiters.settle(feedback_id)  # at once, without the round trip through pub/sub

    def _decode(self, feedback_id: str, found: Found) -> Row:
        """The request and answer read at the key of `feedback_id`; `FeedbackCorruptError`
        (logged once per value) when they cannot be."""
        try:
            if isinstance(found, Unreadable):
                raise FeedbackCorruptError(feedback_id, found.reason)
            assert found is not None
            request, response, status = found
            return decode_text(request, response, status, feedback_id, feedback_id)
        except FeedbackCorruptError as exc:
            key = self.keys.feedback_request(feedback_id)
            self._reports.report(key, _version(found), exc.reason, key=key)
            raise


def _version(found: Found) -> Any:
    """What tells one stored value from another, to log each corrupt one once."""
    return found if isinstance(found, Unreadable) else hash(found)


_INDEX_CORRUPT = Unreadable("the index holds another type")


def _created(answer: Any) -> Found:
    """The answer of `_CREATE`: None (created), what is there already, or `_INDEX_CORRUPT`."""
    return _INDEX_CORRUPT if answer == [4] else row(answer, len(FIELDS))


def _members(answer: Any) -> list[str]:
    if not isinstance(answer, list) or not all(isinstance(m, bytes | str) for m in answer):
        raise MalformedReply("ZRANGE answered with something else than a list of members")
    return [as_text(m) for m in answer]


def _word(answer: Any) -> Any:
    if not isinstance(answer, bytes | str):
        raise MalformedReply("a feedback script answered with something else than a word")
    return answer


def _raw(client: Redis | None, owned: list[Any]) -> Redis | None:
    """`client`, or when it decodes responses a twin on the same settings that does not
    (added to `owned`): the connection layer reads raw answers."""
    if client is None:
        return None
    pool = client.connection_pool
    if not pool.connection_kwargs.get("decode_responses"):
        return client
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    twin = Redis.from_pool(
        type(pool)(
            connection_class=pool.connection_class,  # closed with the twin
            max_connections=pool.max_connections,
            **kwargs,
        )
    )
    owned.append(twin)
    return twin
