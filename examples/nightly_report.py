"""A nightly report on a schedule: every night at 02:00 (Berlin time) one durable run.

    collect >> summarize >> publish

- `nightly_report` is a `Schedule`: each tick starts one durable run whose run id is
  ``"nightly-report@<tick, ISO 8601 UTC>"`` (``nightly-report@2026-12-06T01:00:00Z``);
  the run's channel holds ``scheduled_at``, the tick, which `collect` takes as a parameter,
  so a run reports on its own night however late it starts;
- in production, run it on your Redis workers (every worker that runs it may; each tick
  still starts once) or in ``serve``::

      graflow-async worker --redis-url redis://localhost:6379/0 --import examples.nightly_report \\
          --schedule 'nightly-report=0 2 * * *=examples.nightly_report:nightly' --schedule-timezone Europe/Berlin
      graflow-async serve --schedule 'nightly-report=0 2 * * *=examples.nightly_report:nightly' \\
          --schedule-timezone Europe/Berlin          # then see http://127.0.0.1:8080/ui/schedules/

- ``python examples/nightly_report.py`` does not wait for 02:00: it runs the same workflow
  on a schedule of every second (`demo`) until three reports are out, in a temporary
  directory (removed at the end), and prints them with their run ids.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from graflow_async import Schedule, Scheduler, task, workflow

ORDERS = [("A-1", 12.5), ("A-2", 99.0), ("A-3", 8.5)]  # what the (fake) shop sold that night


@task
async def collect(scheduled_at: str) -> dict:
    """The night's orders (from a fake shop), for the night the tick names."""
    return {"night": scheduled_at, "orders": ORDERS}


@task
async def summarize(collect: dict) -> dict:
    total = sum(amount for _, amount in collect["orders"])
    return {"night": collect["night"], "count": len(collect["orders"]), "total": f"{total:.2f} EUR"}


def write_report(run_id: str, line: str) -> None:
    folder = Path("reports")
    folder.mkdir(exist_ok=True)
    (folder / f"{run_id}.txt").write_text(line + "\n")  # one file per run: a run carried on rewrites it


published: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # (run id, report) as they go out, for main()


@task(inject_context=True)
async def publish(context, summarize: dict) -> str:
    """Writes reports/<run id>.txt."""
    line = f"report for {summarize['night']}: {summarize['count']} orders, {summarize['total']}"
    await asyncio.to_thread(write_report, context.run_id, line)
    published.put_nowait((context.run_id, line))
    return line


with workflow("nightly") as nightly:
    collect >> summarize >> publish

nightly_report = Schedule(nightly, "0 2 * * *", name="nightly-report", timezone="Europe/Berlin")
demo = Schedule(nightly, every=1, name="nightly-demo")


async def main() -> None:
    with tempfile.TemporaryDirectory() as here:
        os.chdir(here)  # .graflow/ (journals, run records, last ticks) and reports/ go here
        print(f"{nightly_report.name}: {nightly_report.cron} {nightly_report.timezone} (see the docstring)")
        print(f"{demo.name}: {demo.when}, until three reports are out")
        async with Scheduler([demo]).running():
            reports = [await published.get() for _ in range(3)]
        for run_id, line in sorted(reports):
            print(f"{run_id}: {line}")


if __name__ == "__main__":
    asyncio.run(main())
