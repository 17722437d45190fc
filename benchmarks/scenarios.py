"""What `make bench` measures: the scenarios, the systems, and which system lacks what.

Every scenario runs on every system, each (scenario, system) in a fresh process:
``asyncio`` is the floor (the same work in plain asyncio, `benchmarks.bench_asyncio`);
``graflow-async`` is this project; the peers run in their own venvs (`benchmarks.peers`).
A system without the feature a scenario needs reports "n/a" with the reason (from its
``bench_*`` module, or `REDIS_NOT_AVAILABLE`), never a stand-in figure.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEMS = ("asyncio", "graflow-async", "graflow", "langgraph", "langgraph+memory")
LABELS = {
    "asyncio": "asyncio (floor)",
    "graflow-async": "graflow-async",
    "graflow": "Graflow",
    "langgraph": "LangGraph",
    "langgraph+memory": "LangGraph + InMemorySaver",
}
PEER_OF = {"graflow": "graflow", "langgraph": "langgraph", "langgraph+memory": "langgraph"}
REDIS_NOT_AVAILABLE = "no Redis workers in LangGraph's open-source library"
REPEAT = 5  # timed runs after the warm-up; the figure is their median
QUICK_REPEAT = 2


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # the workload, as the bench_* modules name it
    n: int  # tasks (HITL: questions per run)
    quick_n: int  # N of `--quick`
    title: str  # "{n}": N, formatted
    groups: tuple[str, ...] = ()  # names that select it on the command line, besides its own
    runner: str = "local"  # "local": one process per system; "redis": `benchmarks.redis_matrix`
    unit: str = "µs/task"
    repeat: int = REPEAT

    def size(self, quick: bool) -> int:
        return self.quick_n if quick else self.n

    def describe(self, quick: bool) -> str:
        return self.title.format(n=f"{self.size(quick):,}")

    def runs(self, quick: bool) -> int:
        return min(self.repeat, QUICK_REPEAT) if quick else self.repeat


SCENARIOS = (
    Scenario("chain-1k", "chain", 1_000, 200, "chain of {n} async tasks", ("chain", "core")),
    Scenario("chain-10k", "chain", 10_000, 1_000, "chain of {n} async tasks", ("chain", "core")),
    Scenario("chain-sync-1k", "chain-sync", 1_000, 200, "chain of {n} plain-function tasks", ("chain",)),
    Scenario("chain-sync-10k", "chain-sync", 10_000, 1_000, "chain of {n} plain-function tasks", ("chain",)),
    Scenario(
        "chain-inline-1k", "chain-inline", 1_000, 200, "chain of {n} cheap plain functions, run inline", ("chain",)
    ),
    Scenario(
        "chain-inline-10k", "chain-inline", 10_000, 1_000, "chain of {n} cheap plain functions, run inline", ("chain",)
    ),
    Scenario("fan-1k", "fan", 1_000, 200, "fan-out/fan-in of {n}", ("fan", "growth", "core")),
    Scenario("fan-10k", "fan", 10_000, 1_000, "fan-out/fan-in of {n}", ("fan", "growth", "core")),
    Scenario("fan-100k", "fan", 100_000, 3_000, "fan-out/fan-in of {n}", ("fan", "growth")),
    Scenario("fan-300k", "fan", 300_000, 5_000, "fan-out/fan-in of {n}", ("growth",)),
    Scenario("fan-1m", "fan", 1_000_000, 10_000, "fan-out/fan-in of {n}", ("growth",), repeat=3),
    Scenario("lattice-10k", "lattice", 10_000, 1_000, "diamond lattice, layers of 10, {n} tasks", ("lattice", "core")),
    Scenario("group-1k", "group", 1_000, 200, "group of {n}: retries + best-effort", ("group",)),
    Scenario("checkpoint-1k", "checkpoint", 1_000, 200, "chain of {n}, checkpoint every 100", ("checkpoint",)),
    Scenario("hitl", "hitl", 10, 3, "HITL: answer -> task resumes, {n} answers a run", ("feedback",), unit="µs/answer"),
    Scenario("redis-fan-2k", "fan", 2_000, 200, "Redis, 2 workers: fan-out of {n}", ("redis",), runner="redis"),
    Scenario("redis-chain-100", "chain", 100, 20, "Redis, 2 workers: chain of {n}", ("redis",), runner="redis"),
)
GROWTH_KIND = "fan"  # the growth curve is the fan-out at 1k, 10k, 100k, 300k and 1M


def select(names: list[str]) -> list[Scenario]:
    """The scenarios named, or belonging to a group named (all when `names` is empty)."""
    if not names:
        return list(SCENARIOS)
    return [s for s in SCENARIOS if s.name in names or set(s.groups) & set(names)]


def known_names() -> set[str]:
    return {s.name for s in SCENARIOS} | {g for s in SCENARIOS for g in s.groups}
