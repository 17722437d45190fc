"""An agent loop: plan, act in parallel, check, and go round again until the goal is met.

    plan >> check >> summarize

- `plan` looks at what the agent knows (the run's channel) and fans out one `research`
  task per open question *at runtime*, as a parallel group (`context.next_task`);
  `check` waits for all of them, because tasks added by `plan` hold its successors.
- each `research` task is a stand-in for a tool or model call: it finds some facts and
  appends them to the channel (`channel.append` is atomic across concurrent tasks,
  local or on Redis workers).
- `check` decides: not enough facts yet, so `context.next_task(plan, goto=True)` loops
  back (and `summarize` is skipped this round); enough, and the run goes on to
  `summarize`. `plan` may run at most `max_cycles=5` times: a loop that never converges
  fails with `CycleLimitError` instead of running forever.

Run it locally: ``python examples/agent_loop.py``. On Redis workers (every task then
runs on a worker, and the loop, the fan-out and the channel work the same), from the
repository's root::

    python -m graflow_async worker --redis-url redis://localhost:6379/0 --import examples.agent_loop
    python -m examples.agent_loop --redis-url redis://localhost:6379/0

Workers find tasks by import path, so the remote run uses the workflow as imported
from ``examples.agent_loop``, not the copy defined in ``__main__``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from typing import Any

from graflow_async import WorkflowResult, parallel, run, task, workflow

GOAL = 12  # facts the agent wants before it writes its summary
TOPICS = ["latency", "throughput", "failure modes", "cost", "operability", "security"]


@task(inject_context=True, max_cycles=5)
async def plan(context: Any) -> list[str]:
    """Pick the topics not researched yet and fan out one research task per topic."""
    done = set(await context.channel.get("researched", []))
    todo = [t for t in TOPICS if t not in done][:3]
    round_no = context.cycle_count
    researchers = [research(task_id=f"research_{round_no}_{i}", topic=t) for i, t in enumerate(todo)]
    ids = context.next_task(parallel(*researchers).with_execution(policy="best_effort"))
    print(f"round {round_no}: plan researches {', '.join(todo)}", flush=True)
    return ids if isinstance(ids, list) else [ids]


@task(inject_context=True)
async def research(context: Any, topic: str) -> int:
    """Find facts about `topic` (a stand-in for a tool or model call)."""
    await asyncio.sleep(0.05)
    found = 1 + int(hashlib.sha256(topic.encode()).hexdigest(), 16) % 3  # 1-3 facts, deterministically
    for n in range(found):
        await context.channel.append("facts", f"{topic} #{n + 1} (from pid {os.getpid()})")
    await context.channel.append("researched", topic)
    return found


@task(inject_context=True)
async def check(context: Any) -> int:
    """Enough facts? Otherwise loop back to `plan`."""
    facts = await context.channel.get("facts", [])
    if len(facts) < GOAL:
        print(f"  check: {len(facts)} facts, want {GOAL}: planning again", flush=True)
        context.next_task(plan, goto=True)
    else:
        print(f"  check: {len(facts)} facts: done", flush=True)
    return len(facts)


@task(inject_context=True)
async def summarize(context: Any, check: int) -> str:
    topics = await context.channel.get("researched")
    return f"{check} facts on {len(topics)} topics: {', '.join(topics)}"


with workflow("agent-loop") as agent:
    plan >> check >> summarize


def report(result: WorkflowResult) -> None:
    print(f"run {result.run_id}: {result.status}")
    print(f"summary: {result.output}")
    rounds = sorted({k.split("_")[1] for k in result.results if k.startswith("research_")})
    print(f"rounds: {len(rounds)}; tasks added at runtime: {sum(k.startswith('research_') for k in result.results)}")


async def main(redis_url: str | None) -> WorkflowResult:
    if redis_url is None:
        return await run(agent)
    import importlib

    from graflow_async.transports import RedisStreamsTransport

    importable = importlib.import_module("examples.agent_loop").agent  # what workers can import too
    async with RedisStreamsTransport(redis_url) as transport:
        return await run(importable, transport=transport)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="run every task on Redis workers importing examples.agent_loop")
    report(asyncio.run(main(parser.parse_args().redis_url)))
