"""`make chaos`: kill the driver of a durable run at random points and check that another
process carries it to the right end (SPEC 10).

    python -m benchmarks.chaos                       # 200 kills on Redis, 50 in-process
    python -m benchmarks.chaos --redis 20 --local 5 --seed 7

Each round starts `chaos_flows.CHAOS` (219 tasks: a best-effort group with failures and
retries, a feedback question, a goto loop, a checkpoint, a strict fan) in a driver process
of its own, and SIGKILLs it (every fourth round: SIGSTOPs it, and lets it go on once the
run was taken over) after a random delay (seeded, printed). On Redis, 2 workers run the
tasks and adopt the run; in-process, a `graflow-async recover` process takes it over.
A feedback answerer in this process answers the run's question after a while, whether or
not a driver lives then.

Reported (printed, and written to ``benchmarks/results/chaos.json``): the rounds whose run
ended with the right results; attempts whose completion was journaled before the kill
and that ran again (must be 0); attempts run twice, and how many of those were not in
flight at the kill (must be 0); the takeover time (kill to the new owner's epoch) p50/p99;
whether each paused driver, let go on, returned the run's outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import ROOT
from .chaos_flows import CHAOS, expected_results
from .redis_streams import redis_server, start_workers, stop

RESULTS = ROOT / "benchmarks" / "results"
LEASE = 1.0  # the drivers' owner_lease, seconds


@dataclass
class Round:
    where: str
    run_id: str
    delay: float
    paused: bool
    right: bool = False
    takeover: float | None = None  # kill to the new owner's epoch, seconds (None: it had ended first)
    journaled_again: int = 0
    twice: int = 0
    twice_not_in_flight: int = 0
    paused_driver_ok: bool | None = None
    error: str = ""


@dataclass
class Report:
    seed: int
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        takeovers = sorted(r.takeover for r in self.rounds if r.takeover is not None)
        paused = [r for r in self.rounds if r.paused_driver_ok is not None]
        return {
            "seed": self.seed,
            "rounds": len(self.rounds),
            "right": sum(r.right for r in self.rounds),
            "journaled_ran_again": sum(r.journaled_again for r in self.rounds),
            "ran_twice": sum(r.twice for r in self.rounds),
            "ran_twice_not_in_flight": sum(r.twice_not_in_flight for r in self.rounds),
            "takeover_p50_s": _pct(takeovers, 0.5),
            "takeover_p99_s": _pct(takeovers, 0.99),
            "owner_lease_s": LEASE,
            "paused_drivers_ok": f"{sum(bool(r.paused_driver_ok) for r in paused)}/{len(paused)}",
        }

    @property
    def ok(self) -> bool:
        s = self.summary()
        return s["right"] == s["rounds"] and s["journaled_ran_again"] == 0 and s["ran_twice_not_in_flight"] == 0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


# --- the driver and the recoverer (processes of their own) ----------------------------------
async def drive(where: str, run_id: str, place: str) -> None:
    """Drive CHAOS durably; print its output. `place`: the Redis URL or the local directory."""
    from graflow_async import run

    if where == "redis":
        from graflow_async.transports.redis import RedisStreamsTransport

        async with RedisStreamsTransport(place) as transport:
            result = await run(CHAOS, run_id=run_id, transport=transport, owner_lease=LEASE)
    else:
        stores = _local_stores(place)
        result = await run(CHAOS, run_id=run_id, durable=True, owner_lease=LEASE, **stores)
    print(json.dumps({"output": result.output}), flush=True)


def _local_stores(place: str) -> dict[str, Any]:
    from graflow_async.feedback import FileFeedbackStore

    return {"checkpoint_store": f"{place}/checkpoints", "feedback_store": FileFeedbackStore(f"{place}/feedback")}


async def take_over(run_id: str, place: str) -> None:
    from graflow_async import recover

    await recover(run_id, workflow=CHAOS, owner_lease=LEASE, **_local_stores(place))


# --- one round ------------------------------------------------------------------------------
class Harness:
    def __init__(self, where: str, place: str, marks: Path, rng: random.Random) -> None:
        self.where, self.place, self.marks, self.rng = where, place, marks, rng
        self.run_seconds = 1.0  # how long a run takes undisturbed (`calibrate`): kills land within it

    async def calibrate(self) -> None:
        """Time one run left alone, from its start to its outcome."""
        run_id = f"chaos-{self.where}-calibration"
        answering = asyncio.create_task(self._answer(run_id))
        driver = self._spawn("drive", self.where, run_id, self.place)
        try:
            await self._started(run_id, driver)
            started = time.monotonic()
            await self._result(run_id)
            self.run_seconds = time.monotonic() - started
        finally:
            answering.cancel()
            await asyncio.to_thread(driver.wait, 30)
        print(f"  {self.where}: an undisturbed run takes {self.run_seconds:.2f}s", flush=True)

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CHAOS_MARKS": str(self.marks), "GRAFLOW_LOG_LEVEL": "critical"}
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.chaos", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE
        )

    async def round(self, n: int) -> Round:
        run_id = f"chaos-{self.where}-{n}-{self.rng.randrange(1 << 30):x}"
        r = Round(self.where, run_id, round(self.rng.uniform(0.0, self.run_seconds), 3), paused=n % 4 == 3)
        self.marks.write_bytes(b"")
        answering = asyncio.create_task(self._answer(run_id))
        driver = self._spawn("drive", self.where, run_id, self.place)
        try:
            await self._started(run_id, driver)
            await asyncio.sleep(r.delay)
            killed = time.time()
            driver.send_signal(signal.SIGSTOP if r.paused else signal.SIGKILL)
            done_before, running = await self._journaled(run_id)
            recoverer = self._spawn("recover", run_id, self.place) if self.where == "local" else None
            r.takeover = await self._new_epoch(run_id, killed)
            result = await self._result(run_id)
            r.right = result.results == expected_results()
            if r.paused:
                driver.send_signal(signal.SIGCONT)
                out, _ = await asyncio.to_thread(driver.communicate, timeout=30)
                r.paused_driver_ok = driver.returncode == 0 and json.loads(out or b"{}").get("output") == result.output
            if recoverer is not None:
                await asyncio.to_thread(recoverer.wait, 30)
            self._score(r, killed, done_before, running)
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            answering.cancel()
            for p in (driver,):
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                    p.wait()
        return r

    def _score(
        self, r: Round, killed: float, done_before: set[tuple[str, int, int]], running: set[tuple[str, int, int]]
    ) -> None:
        starts: dict[tuple[str, int, int], list[float]] = {}
        for line in self.marks.read_text().splitlines():
            task_id, cycle, attempt, at, _pid = line.split()
            starts.setdefault((task_id, int(cycle), int(attempt)), []).append(float(at))
        r.journaled_again = sum(1 for key in done_before for at in starts.get(key, []) if at > killed)
        twice = {key for key, ats in starts.items() if len(ats) > 1}
        r.twice = len(twice)
        started = {key for key, ats in starts.items() if min(ats) <= killed and key not in done_before}
        r.twice_not_in_flight = len(twice - started - running)  # in flight: started, or sent and not done

    async def _started(self, run_id: str, driver: subprocess.Popen[bytes]) -> None:
        """Until the driver has started the run (its header is kept): kills count from there."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and driver.poll() is None:
            async with self._home(run_id) as home:
                if await home.read_header() is not None:
                    return
            await asyncio.sleep(0.005)
        raise RuntimeError(f"the driver of {run_id} did not start the run (exit code {driver.poll()})")

    async def _journaled(self, run_id: str) -> tuple[set[tuple[str, int, int]], set[tuple[str, int, int]]]:
        """Right after the kill, from the run's journal: the attempts whose completion it
        holds, and those in flight (dispatched, not completed: they may run again)."""
        from graflow_async.plan import ChannelData, RunGraph, RunPlan
        from graflow_async.plan.facts import Failed, Succeeded
        from graflow_async.run.journal.facts import read_facts
        from graflow_async.run.takeover import read_back

        async with self._home(run_id) as home:
            back = await read_back(home)
            facts = read_facts((await home.journal.read()).facts, run_id)
        plan = RunPlan(RunGraph(CHAOS.compile()), ChannelData(back.channel or {}))
        back.restore(plan)  # the run as the process taking it over finds it
        ids = plan.graph.ids
        done = {(ids[f.node], f.cycle, f.attempt) for f in facts if type(f) in (Succeeded, Failed)}
        flight = plan.in_flight()
        running = {(ids[n], c, a) for n, c, a in zip(flight.nodes, flight.cycles, flight.attempts, strict=True)}
        return done, running

    async def _new_epoch(self, run_id: str, killed: float) -> float | None:
        deadline = killed + 30
        while time.time() < deadline:
            async with self._home(run_id) as home:
                if await home.read_outcome() is not None and await self._epoch(home) <= 1:
                    return None  # it had ended before the kill
                if await self._epoch(home) >= 2:
                    return round(time.time() - killed, 3)
            await asyncio.sleep(0.01)
        raise TimeoutError(f"run {run_id} was not taken over within 30 s")

    async def _epoch(self, home: Any) -> int:
        if self.where == "redis":
            epoch = await home.transport.client.hget(home.transport.keys.owner(home.run_id), "epoch")
            return int(epoch or 0)
        from graflow_async.checkpoints import FileCheckpointStore, runlock

        return await runlock.newest_epoch(FileCheckpointStore(f"{self.place}/checkpoints"), home.run_id)

    async def _result(self, run_id: str) -> Any:
        from graflow_async import run_result

        if self.where == "redis":
            from graflow_async.transports.redis import RedisStreamsTransport

            async with RedisStreamsTransport(self.place) as transport:
                return await run_result(run_id, transport=transport, timeout=60)
        return await run_result(run_id, checkpoint_store=f"{self.place}/checkpoints", timeout=60)

    def _home(self, run_id: str) -> Any:
        return _Home(self.where, self.place, run_id)

    async def _answer(self, run_id: str) -> None:
        """Answer the run's question a random while after it is asked (a driver may be dead then)."""
        store = self._feedback_store()
        try:
            while True:
                pending = await store.list_pending(run_id)
                if pending:
                    await asyncio.sleep(self.rng.uniform(0, 0.5))
                    for request in pending:
                        await store.respond(request.feedback_id, {"approved": True})
                    return
                await asyncio.sleep(0.02)
        finally:
            await store.aclose()

    def _feedback_store(self) -> Any:
        if self.where == "redis":
            from graflow_async.feedback.redis import RedisFeedbackStore

            return RedisFeedbackStore(self.place)
        return _local_stores(self.place)["feedback_store"]


class _Home:
    """A run's home (`run.homes`) for one look, with the connection it needs."""

    def __init__(self, where: str, place: str, run_id: str) -> None:
        self.where, self.place, self.run_id = where, place, run_id
        self.transport: Any = None

    async def __aenter__(self) -> Any:
        from graflow_async.run.homes import home_for

        if self.where == "redis":
            from graflow_async.transports.redis import RedisStreamsTransport

            self.transport = await RedisStreamsTransport(self.place).__aenter__()
            return home_for(self.run_id, self.transport, None)
        return home_for(self.run_id, None, f"{self.place}/checkpoints")

    async def __aexit__(self, *exc: Any) -> None:
        if self.transport is not None:
            await self.transport.aclose()


# --- the whole harness ----------------------------------------------------------------------
async def chaos(redis_rounds: int, local_rounds: int, seed: int) -> Report:
    rng, report = random.Random(seed), Report(seed)
    print(f"chaos: seed {seed}, {redis_rounds} kills on Redis (2 workers), {local_rounds} in-process", flush=True)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        marks = Path(tmp) / "marks"
        if redis_rounds:
            with redis_server() as (url, _):
                logs = Path(tmp) / "logs"
                logs.mkdir()
                os.environ["CHAOS_MARKS"] = str(marks)
                workers = start_workers(url, ["chaos-w1", "chaos-w2"], 0, logs, module="benchmarks.chaos_flows")
                try:
                    harness = Harness("redis", url, marks, rng)
                    await harness.calibrate()
                    for n in range(redis_rounds):
                        report.rounds.append(_said(await harness.round(n)))
                finally:
                    for w in workers:
                        stop(w)
        harness = Harness("local", tmp, marks, rng)
        if local_rounds:
            await harness.calibrate()
        for n in range(local_rounds):
            report.rounds.append(_said(await harness.round(n)))
    return report


def _said(r: Round) -> Round:
    what = "paused" if r.paused else "killed"
    print(
        f"  {r.where:5} {r.run_id}: {what} at {r.delay:.3f}s, takeover {r.takeover}s, "
        f"{'right' if r.right else 'WRONG'}, ran twice {r.twice} ({r.twice_not_in_flight} not in flight), "
        f"journaled ran again {r.journaled_again}{', ' + r.error if r.error else ''}",
        flush=True,
    )
    return r


def main(argv: list[str]) -> int:
    if argv[:1] == ["drive"]:
        asyncio.run(drive(argv[1], argv[2], argv[3]))
        return 0
    if argv[:1] == ["recover"]:
        asyncio.run(take_over(argv[1], argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--redis", type=int, default=200, help="kills on Redis (default 200)")
    parser.add_argument("--local", type=int, default=50, help="kills in-process (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points (default: random, printed)")
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    report = asyncio.run(chaos(args.redis, args.local, seed))
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rounds": [asdict(r) for r in report.rounds]}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
