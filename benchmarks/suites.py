"""Detail suites: graflow-async's own figures beyond the comparison table (checkpoint
stores, feedback stores, the Redis transport, a task's context on a worker, Graflow's
Redis workers in depth). Their JSON goes under ``details`` in ``results/latest.json``
and each prints its own table after the comparison.

To add a suite, write ``benchmarks/<module>.py`` that

- runs as ``python -m benchmarks.<module> [ARGS]`` and prints its result as the last
  line of stdout, one JSON object (`benchmarks.report` does this), and
- defines a function printing that result as a table (``print_table(result)``),

then add one line to `SUITES` below, e.g.
``Suite("mysuite", "my_module", quick_args=("--calls", "5"), table="table")`` (see
the handlers entry).
Arguments are strings, as on a command line.
``python -m benchmarks mysuite`` then runs it alone, and ``make bench`` with the rest.
"""

from __future__ import annotations

import importlib
import subprocess
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Suite:
    name: str  # selects it on the command line
    module: str  # benchmarks.<module>
    args: tuple[str, ...] = ()  # for a full run
    quick_args: tuple[str, ...] = ()  # for --quick: fewer repeats, smaller N
    table: str = "print_table"  # the module's function that prints the result
    aliases: tuple[str, ...] = ()  # other names that select it
    doc: str = ""

    def run(self, quick: bool) -> dict[str, Any]:
        """Run the suite in its own process; its JSON (or an error record)."""
        from . import run_module

        try:
            return run_module(self.module, *(self.quick_args if quick else self.args))
        except subprocess.CalledProcessError as exc:
            return {"status": "error", "error": (exc.stderr or "").strip()[-1500:]}

    def print_table(self, result: dict[str, Any]) -> None:
        if result.get("status") == "error":
            print(f"{self.name}: failed\n{result['error']}")
            return
        getattr(importlib.import_module(f"benchmarks.{self.module}"), self.table)(result)


SUITES: tuple[Suite, ...] = (
    Suite(
        "checkpoints",
        "checkpoints",
        quick_args=tuple("--tasks 200 --repeat 2".split()),
        doc="save / load / resume of 1,000 results of 1 KiB on the file store and S3 (moto), next to a raw write",
    ),
    Suite(
        "feedback",
        "feedback",
        quick_args=tuple("--requests 20".split()),
        doc="answer -> resume, back to back: in-process and across processes through Redis",
    ),
    Suite(
        "redis-streams",
        "redis_streams",
        aliases=("redis",),
        quick_args=tuple("--fan 2000 --chain 200 --latency 20 --repeat 1 --workers 2".split()),
        doc="Redis Streams workers: fan-out of 20,000, chain of 2,000, dispatch latency, CPU per role, floors",
    ),
    Suite(
        "durable",
        "durable",
        quick_args=tuple("--fan 500 --chain 100 --local-chain 300 --facts 10000 --repeat 2 --local-repeat 2".split()),
        doc="durable=True against durable=False: Redis fan-out and chain, in-process chain; a 100,000-fact takeover",
    ),
    Suite(
        "flow-control",
        "flow_control",
        aliases=("limits",),
        quick_args=tuple(
            "--fan 500 --keyed 2000 --keys 100 --backlog 2000 --urgent 20 --rate-seconds 5 --repeat 2".split()
        ),
        doc="limits and priorities: fan-out under a wide limit, keyed tasks, priority behind a backlog, rate window",
    ),
    Suite(
        "streams",
        "streams",
        quick_args=tuple("--items 20000 --redis-items 2000 --repeat 2".split()),
        doc="context.stream: µs per chunk in-process; 10,000 chunks from a worker to a reader on Redis",
    ),
    Suite(
        "remote-context",
        "remote_context",
        quick_args=tuple("--requests 20 --saves 20".split()),
        doc="request_feedback and checkpoint() from a task on a Redis worker",
    ),
    Suite(
        "graflow-redis",
        "graflow_redis",
        aliases=("redis",),
        quick_args=tuple("--fan 200 --fan-big 0 --chain 20 --latency 10 --repeat 1 --workers 2".split()),
        doc="Graflow 0.2.0's Redis workers in depth: 1 and 2 workers, a 20,000 group, dispatch latency",
    ),
    Suite(
        "handlers",
        "handlers",
        quick_args=tuple("--calls 5 --docker-calls 3".split()),
        table="table",
        doc="what a task costs in a fresh container (docker handler, a private dockerd) or child process",
    ),
)


def select(names: list[str]) -> list[Suite]:
    """The suites named (by name or alias); all when `names` is empty."""
    if not names:
        return list(SUITES)
    return [s for s in SUITES if s.name in names or set(s.aliases) & set(names)]


def known_names() -> set[str]:
    return {s.name for s in SUITES} | {a for s in SUITES for a in s.aliases}
