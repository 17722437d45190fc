"""Worker processes for the tests: ``python -m graflow_async worker`` subprocesses on a
real redis-server, importing the test modules that define remote tasks
(`remote_flows`, `remote_dynamic`, `remote_faults`), and the fixtures that start and kill them.

The `workers` and `pool` fixtures reach every test module as a plugin (conftest.py's `pytest_plugins`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from redis_server import RedisServer

SUPPORT = Path(__file__).resolve().parent  # tests/support: the modules workers import by name
ROOT = SUPPORT.parents[1]
PYTHONPATH = os.pathsep.join([str(SUPPORT), str(ROOT)])  # for any child that imports the flow modules by name
READY_TIMEOUT = 20.0
RUN_TIMEOUT = 20.0


# --- worker processes -----------------------------------------------------------------------
def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHONPATH
    env["GRAFLOW_LOG_LEVEL"] = "info"
    return env


def worker_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "graflow_async", "worker", "--redis-url", url, *args]


@dataclass
class Worker:
    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class Workers:
    """Worker subprocesses on one Redis; `close` kills whatever is still running."""

    url: str
    logs: Path
    namespace: str = "graflow"
    all: list[Worker] = field(default_factory=list)

    def start(self, n: int = 1, *args: str, wait: bool = True) -> list[Worker]:
        started = []
        for _ in range(n):
            worker_id = f"w-{uuid.uuid4().hex[:8]}"
            log = self.logs / f"{worker_id}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    worker_command(
                        self.url,
                        "--import",
                        "remote_flows",
                        "--import",
                        "remote_dynamic",
                        "--import",
                        "remote_faults",
                        "--worker-id",
                        worker_id,
                        "--namespace",
                        self.namespace,
                        *args,
                    ),
                    env=worker_env(),
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Worker(worker_id, process, log))
        self.all.extend(started)
        if wait:
            self.wait_ready(started)
        return started

    def wait_ready(self, workers: list[Worker]) -> None:
        """Until each worker has joined the consumer group (its first XREADGROUP)."""
        deadline = time.monotonic() + READY_TIMEOUT
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                for w in workers:
                    if w.process.poll() is not None:
                        raise AssertionError(f"worker {w.worker_id} exited {w.process.returncode}:\n{w.output()}")
                if {w.worker_id for w in workers} <= self._consumers(client):
                    return
                if time.monotonic() > deadline:
                    logs = "\n".join(w.output() for w in workers)
                    raise AssertionError(f"workers not ready within {READY_TIMEOUT}s:\n{logs}")
                time.sleep(0.05)
        finally:
            client.close()

    def _consumers(self, client: redis.Redis) -> set[str]:
        try:
            consumers = client.xinfo_consumers(f"{self.namespace}:tasks", f"{self.namespace}:workers")
        except redis.ResponseError:  # no stream or no group yet
            return set()
        return {c["name"].decode() for c in consumers}

    @property
    def pids(self) -> set[int]:
        return {w.pid for w in self.all}

    def close(self) -> None:
        for w in self.all:
            if w.process.poll() is None:
                w.process.kill()
            w.process.wait(10)


async def wait_exit(worker: Worker, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while worker.process.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {worker.worker_id} still running after {timeout}s:\n{worker.output()}")
        await asyncio.sleep(0.05)
    return worker.process.returncode


@contextlib.asynccontextmanager
async def background(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """`coro` as a task, cancelled and awaited when the block ends (whatever happened)."""
    running = asyncio.create_task(coro)
    try:
        yield running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` (sync or async) until true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def queue_settled(client: Any, stream: str = "graflow:tasks") -> bool:
    """Whether the task stream is empty and nothing taken from it waits for an ack (a
    worker acks a task with its reply): every task has been settled."""
    groups = await client.xinfo_groups(stream)
    return await client.xlen(stream) == 0 and all(g["pending"] == 0 for g in groups)


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    pool = Workers(redis_url, logs)
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class Pool:
    url: str
    workers: Workers


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A redis-server of its own with 1 or 2 workers, shared by the tests of this module
    that only need runs to work (every run has its own keys)."""
    server = RedisServer()
    workers = Workers(server.url, tmp_path_factory.mktemp("pool-logs"))
    try:
        server.start()
        workers.start(request.param, "--concurrency", "4")
        yield Pool(server.url, workers)
    finally:
        workers.close()
        server.cleanup()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape(http: aiohttp.ClientSession, port: int) -> tuple[str, dict[str, float]]:
    async with asyncio.timeout(10), http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    return text, samples
