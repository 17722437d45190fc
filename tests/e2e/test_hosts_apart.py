"""Hosts apart (SPEC section 7): Redis, two workers and a run on four network
namespaces joined by veth links (tests/support/netns.py), and one worker's link cut mid-task.

Worker A (host w1) takes the task `held`; its link is cut while the task runs. Worker
B (host w2) must reclaim the task and finish it within lease + 1 s of the cut, the run
must complete with B's result, and once A's link is back A's copy of the task ends
and its late reply reaches Redis, where it is dropped: either the run has ended and
its reply stream is gone (``after-the-run``), or the run is still going and ignores
the duplicate (``during-the-run``: the next task, `gate`, holds the run open until the
late reply has been written).

The pytest process stays in the root namespace: it starts every process through
``ip netns exec`` and watches Redis through a unix socket (no network involved),
with ``redis-cli monitor`` recording every command and the address it came from.
Needs root; skipped otherwise, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from netns import Topology, ip_command
from redis_server import REDIS_SERVER
from worker_processes import ROOT, SUPPORT, Worker, worker_command, worker_env

from graflow_async.wire.envelope import decode
from graflow_async.wire.messages import TaskReply

T = TypeVar("T")
NAMESPACE = "graflow"
REDIS_PORT = 16379  # inside the redis namespace: nothing else listens there
LEASE = 2.0
# B's start is stamped by the task itself (time.time() on B) and the cut by the test just
# before it runs `ip`: no polling sits between the two, so no measurement allowance is added.
RECLAIM_LIMIT = LEASE + 1.0
WAIT = 20.0


def require_network_namespaces() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the hosts-apart test needs root (network namespaces), and CI=true: it must run")
        pytest.skip("network namespaces need root")
    if ip_command() is None:
        pytest.fail("iproute2's `ip` is missing: `make install` installs it")


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, logs: Callable[[], str]) -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(0.02)


@dataclass(frozen=True, slots=True)
class Command:
    """One line of ``redis-cli monitor``: when, from where (``addr:port``), what, on which key."""

    time: float
    client: str
    name: str
    key: str


_MONITOR_LINE = re.compile(r'^(\d+\.\d+) \[\d+ ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?')


@dataclass
class Hosts:
    """The topology with Redis running on host ``redis`` and what the test started."""

    net: Topology
    directory: Path
    socket: Path = field(init=False)
    client: Any = None
    monitor: subprocess.Popen[bytes] | None = None
    workers: list[Worker] = field(default_factory=list)
    run_log: Path | None = None

    def __post_init__(self) -> None:
        self.socket = self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"redis://{self.net.address('redis')}:{REDIS_PORT}/0"

    # --- starting things -------------------------------------------------------------------
    def start_redis(self) -> None:
        log = self.directory / "redis.log"
        self.net.popen(
            "redis",
            [
                REDIS_SERVER,
                "--port",
                str(REDIS_PORT),
                "--bind",
                self.net.address("redis"),
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)
        wait_until(self._answers, 10, "redis-server in its namespace", self.logs)
        monitor_log = self.directory / "monitor.log"
        with monitor_log.open("wb") as out:
            self.monitor = subprocess.Popen(
                ["redis-cli", "-s", str(self.socket), "monitor"], stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(lambda: monitor_log.read_text(errors="replace").startswith("OK"), 10, "redis-cli monitor", self.logs)
        for host in ("w1", "w2", "run"):
            assert self.net.connects(host, self.net.address("redis"), REDIS_PORT, 10), (
                f"redis-server unreachable from {host} over the veth links\n{self.logs()}"
            )

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def start_worker(self, host: str) -> Worker:
        worker_id = f"{host}-{uuid.uuid4().hex[:6]}"
        log = self.directory / f"worker-{worker_id}.log"
        with log.open("wb") as out:
            process = self.net.popen(
                host,
                worker_command(
                    self.url,
                    "--import",
                    "remote_flows",
                    "--import",
                    "remote_dynamic",
                    "--import",
                    "netns_flows",
                    "--worker-id",
                    worker_id,
                    "--namespace",
                    NAMESPACE,
                ),
                env=worker_env(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(worker_id, process, log)
        self.workers.append(worker)
        wait_until(lambda: worker_id in self._consumers(), WAIT, f"worker {worker_id} on {host} to join", self.logs)
        return worker

    def _consumers(self) -> set[str]:
        for w in self.workers:
            assert w.process.poll() is None, f"worker {w.worker_id} exited {w.process.returncode}\n{self.logs()}"
        try:
            found = self.client.xinfo_consumers(f"{NAMESPACE}:tasks", f"{NAMESPACE}:workers")
        except redis.ResponseError:  # no stream or group yet
            return set()
        return {c["name"].decode() for c in found}

    def start_run(self, run_id: str, markers: Path) -> subprocess.Popen[bytes]:
        self.run_log = self.directory / "run.log"
        with (self.directory / "run.out").open("wb") as out, self.run_log.open("wb") as err:
            return self.net.popen(
                "run",
                [
                    sys.executable,
                    str(SUPPORT / "netns_run.py"),
                    self.url,
                    NAMESPACE,
                    str(LEASE),
                    run_id,
                    str(markers),
                ],
                env=worker_env(),
                cwd=ROOT,
                stdout=out,
                stderr=err,
            )

    def started(self, markers: Path, worker: Worker, running: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        """What `held` wrote when `worker` started it, or None if it has not (the run must still go)."""
        assert running.poll() is None, f"the run ended early ({running.returncode})\n{self.logs()}"
        try:
            found: dict[str, Any] = json.loads((markers / f"started-{worker.pid}").read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not yet, or half written
            return None
        return found

    def finish(self, running: subprocess.Popen[bytes]) -> dict[str, Any]:
        """The run's result, once it has exited."""
        wait_until(lambda: running.poll() is not None, WAIT, "the run to end", self.logs)
        lines = (self.directory / "run.out").read_text().splitlines()
        assert running.returncode == 0 and lines, f"the run failed ({running.returncode})\n{self.logs()}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    # --- watching ----------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        out = []
        for line in (self.directory / "monitor.log").read_text(errors="replace").splitlines():
            m = _MONITOR_LINE.match(line)
            if m:
                out.append(Command(float(m[1]), m[2], m[3].upper(), m[4] or ""))
        return out

    def commands_from(self, host: str) -> list[Command]:
        return [c for c in self.commands() if c.client.startswith(f"{self.net.address(host)}:")]

    def assert_stalled(self, host: str, cut_at: float, restore_at: float) -> None:
        """The cut really stopped `host`'s traffic (Redis heard nothing from it until the link
        was back) and stalled it rather than resetting it (a connection from before the cut
        carries on after it)."""
        heard = [c for c in self.commands_from(host) if cut_at + 0.1 < c.time < restore_at]
        assert not heard, f"commands from {host} while its link was down: {heard[:5]}"
        before = {c.client for c in self.commands_from(host) if c.time < cut_at}
        wait_until(
            lambda: any(c.client in before for c in self.commands_from(host) if c.time > restore_at),
            WAIT,
            f"a connection {host} opened before the cut to carry on",
            self.logs,
        )

    def logs(self) -> str:
        parts = [f"--- {w.worker_id} (pid {w.pid}):\n{w.output()}" for w in self.workers]
        for name in ("run.log", "run.out", "redis.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}:\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.kill()
            self.monitor.wait(10)
        if self.client is not None:
            self.client.close()
        self.net.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    require_network_namespaces()
    net = Topology(["redis", "w1", "w2", "run"])
    # A short directory of its own: a unix socket path must fit in 108 bytes.
    hosts = Hosts(net, Path(tempfile.mkdtemp(prefix="gft-")))
    try:
        net.create()
        hosts.start_redis()
        yield hosts
    finally:
        hosts.close()


@pytest.mark.parametrize("late_reply", ["after-the-run", "during-the-run"])
def test_a_cut_off_workers_task_is_finished_by_the_other_and_its_late_reply_dropped(
    hosts: Hosts, tmp_path: Path, late_reply: str
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    if late_reply == "after-the-run":
        (markers / "open").touch()  # `gate` passes at once: the run ends before A's link is back
    run_id = f"apart-{uuid.uuid4().hex[:8]}"
    replies = f"{NAMESPACE}:run:{{{run_id}}}:replies"

    a = hosts.start_worker("w1")  # alone: the first delivery of `held` is A's
    running = hosts.start_run(run_id, markers)
    first = wait_until(lambda: hosts.started(markers, a, running), WAIT, "A to start `held`", hosts.logs)
    assert first["first"]
    b = hosts.start_worker("w2")

    cut_at = time.time()
    hosts.net.cut("w1")
    again = wait_until(
        lambda: hosts.started(markers, b, running), RECLAIM_LIMIT + 5, "B to take over `held`", hosts.logs
    )
    reclaimed_after = again["time"] - cut_at
    assert 0 < reclaimed_after <= RECLAIM_LIMIT, f"B started `held` {reclaimed_after:.2f}s after the cut"
    assert a.process.poll() is None, f"A died when its link went down\n{hosts.logs()}"

    result = hosts.finish(running) if late_reply == "after-the-run" else None
    restore_at = time.time()
    hosts.net.restore("w1")
    (markers / "release").touch()  # A's copy of `held` returns; A writes its (late) reply

    def late_reply_written() -> Command | None:
        return next((c for c in hosts.commands_from("w1") if c.name == "XADD" and c.key == replies), None)

    late = wait_until(late_reply_written, WAIT, "A's late reply to reach Redis", hosts.logs)
    assert late.time > restore_at
    if result is None:  # the run is still going (held open by `gate`): the duplicate reaches it
        entries = hosts.client.xrange(replies)
        sent = [decode(fields[b"m"]) for _, fields in entries]
        assert any(isinstance(m, TaskReply) and m.value == {"pid": a.pid, "first_delivery": True} for m in sent)
        (markers / "open").touch()
        result = hosts.finish(running)
    else:  # the run has ended and its reply stream with it: the late XADD (NOMKSTREAM) lands nowhere
        assert not hosts.client.exists(replies)

    assert result["run_id"] == run_id and result["status"] == "completed"
    assert result["results"] == {
        "held": {"pid": b.pid, "first_delivery": False},  # B's reply won; A's late one was dropped
        "gate": {"pid": b.pid, "held_by": b.pid},  # sent while A was cut off: only B could take it
    }
    assert len(list(markers.glob("gate-*"))) == 1  # the duplicate did not start `gate` again
    assert not hosts.client.exists(replies)  # the ended run's reply stream is gone
    hosts.assert_stalled("w1", cut_at, restore_at)
    assert a.process.poll() is None and b.process.poll() is None, hosts.logs()
    assert "Traceback" not in a.output() + b.output(), hosts.logs()
    print(
        f"\n[{late_reply}] lease {LEASE}s: B started `held` {reclaimed_after:.3f}s after the cut; "
        f"A's late reply reached Redis {late.time - restore_at:.3f}s after the link came back"
    )
