"""The store backends the conformance suites run over: memory, file and Redis (a real
server), each openable again here and in a child process, and for file and Redis a
way to corrupt a record behind the store's back (`damage`).

A test class takes its ``backend`` and ``store`` fixtures from `OverBackends` (every
backend) or `OverSharedBackends` (those that keep records outside the process, which
also gives ``damage``): one definition for every suite of every contract.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graflow_async.feedback import FeedbackStore, FileFeedbackStore, MemoryFeedbackStore, RedisFeedbackStore
from graflow_async.feedback.conformance import ask
from graflow_async.feedback.conformance_corrupt import MARK
from graflow_async.feedback.file import default_runs_directory, file_key
from graflow_async.feedback.stored import MAX_RECORD_BYTES as MAX_FEEDBACK_BYTES
from graflow_async.records.base import MAX_RECORD_BYTES
from graflow_async.records.conformance import record
from graflow_async.transports.keys import Keys

Damage = Callable[[str, str, str], Awaitable[None]]


@dataclass
class Backend:
    """How to open stores on one set of data, here and in a child process."""

    kind: str
    make: Callable[[], FeedbackStore]
    child_expr: str  # Python expression building an equivalent store in another process
    damage: Damage | None = None  # writes a corrupt record (see feedback.conformance_corrupt)


def make_backend(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Backend:
    if kind == "memory":
        memory = MemoryFeedbackStore()
        return Backend(kind, lambda: memory, "")
    if kind == "file":
        directory = tmp_path / "feedback"
        return Backend(
            kind, lambda: FileFeedbackStore(directory), f"FileFeedbackStore({str(directory)!r})", FileDamage(directory)
        )
    url: str = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    return Backend(
        kind,
        lambda: RedisFeedbackStore(url, namespace=namespace),
        f"RedisFeedbackStore({url!r}, namespace={namespace!r})",
        RedisDamage(url, Keys(namespace)),
    )


class OverBackends:
    """``backend`` and ``store`` fixtures over memory, file and Redis."""

    @pytest.fixture(params=["memory", "file", "redis"])
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        return make_backend(request, request.param, tmp_path)

    @pytest.fixture
    async def store(self, backend: Backend) -> AsyncIterator[FeedbackStore]:
        async with backend.make() as opened:
            yield opened


class OverSharedBackends(OverBackends):
    """``backend``, ``store`` and ``damage`` over the backends shared by processes: file and Redis."""

    @pytest.fixture(params=["file", "redis"])
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        return make_backend(request, request.param, tmp_path)

    @pytest.fixture
    def damage(self, backend: Backend) -> Damage:
        assert backend.damage is not None
        return backend.damage


def _request(feedback_id: str, how: str) -> Any:
    """A request record's JSON value, corrupt as `how` says (None: `how` is no JSON value)."""
    good = {"request": ask(feedback_id, prompt=MARK).to_dict(), "response": None, "status": "pending"}
    return {
        "wrong-types": {**good, "request": {**good["request"], "created_at": MARK}},
        "wrong-schema": {"note": MARK},
        "huge": {**good, "request": {**good["request"], "metadata": {"pad": MARK + "x" * MAX_FEEDBACK_BYTES}}},
        "other-id": {**good, "request": ask("someone-else", prompt=MARK).to_dict()},
        "bad-answer": {**good, "status": "answered", "response": {"feedback_id": feedback_id, "approved": MARK}},
    }.get(how)


def _suspension(how: str) -> Any:
    return {
        "wrong-types": {"checkpoint": 5, "workflow": MARK},
        "wrong-schema": [MARK],
        "huge": {"checkpoint": "c", "pad": MARK + "x" * 70_000},
    }.get(how)


def _run(run_id: str, how: str) -> Any:
    return {
        "wrong-types": {**record(run_id), "started_at": MARK},
        "wrong-schema": [MARK],
        "huge": record(run_id, results={"x": MARK + "y" * MAX_RECORD_BYTES}),
        "other-id": record("someone-else", error=MARK),
    }.get(how)


class FileDamage:
    """Corrupt records in a `FileFeedbackStore`'s directories."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def __call__(self, kind: str, record_id: str, how: str) -> None:
        if kind == "request":
            path, value = self.directory / f"{file_key(record_id)}.json", _request(record_id, how)
        elif kind == "suspension":
            path = self.directory / "runs" / f"{file_key(record_id)}.json"
            value = {"run_id": record_id, "record": _suspension(how)}
        else:
            path, value = default_runs_directory(self.directory) / f"{file_key(record_id)}.json", _run(record_id, how)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        if how == "wrong-kind":
            os.mkfifo(path)  # a reader that opened it for reading would wait for a writer forever
        elif how == "not-json":
            path.write_text('{"prompt": "' + MARK)
        else:
            path.write_text(json.dumps(value))


class RedisDamage:
    """Corrupt records in a `RedisFeedbackStore`'s keys (listed in its indexes)."""

    def __init__(self, url: str, keys: Keys) -> None:
        self.url = url
        self.keys = keys

    async def __call__(self, kind: str, record_id: str, how: str) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(self.url)
        try:
            if kind == "request":
                key = self.keys.feedback_request(record_id)
                await client.zadd(self.keys.feedback_index, {record_id: 1.5})
            elif kind == "suspension":
                key = self.keys.suspension(record_id)
            else:
                key = self.keys.run_record(record_id)
                await client.zadd(self.keys.run_index, {record_id: 2.0})
            await client.delete(key)
            await self._write(client, kind, key, record_id, how)
        finally:
            await client.aclose()

    async def _write(self, client: Any, kind: str, key: str, record_id: str, how: str) -> None:
        if how == "wrong-kind":
            await (
                client.rpush(key, MARK)
                if kind == "run"
                else client.hset(key, "note", MARK)
                if kind == "suspension"
                else client.set(key, MARK)
            )
        elif kind == "request":
            value = _request(record_id, how)
            if how == "wrong-schema":
                await client.hset(key, "note", MARK)
            elif how == "bad-answer":
                await client.hset(
                    key,
                    mapping={
                        "request": json.dumps(value["request"]),
                        "status": "answered",
                        "response": '{"approved": "' + MARK,
                    },
                )
            else:
                request = '{"prompt": "' + MARK if how == "not-json" else json.dumps(value["request"])
                await client.hset(key, mapping={"request": request, "status": "pending"})
        else:
            value = _suspension(how) if kind == "suspension" else _run(record_id, how)
            await client.set(key, '{"x": "' + MARK if how == "not-json" else json.dumps(value))
