"""A release pipeline: the example `make demo` runs.

    fetch_source >> (build_linux | build_macos | build_windows | build_docs) >> publish >> notify

- the four builds run side by side under a best-effort policy: the Windows build
  fails (its runner is "offline"), and the release goes on with the others;
- `publish` flakes once (an upload timeout) and succeeds when retried;
- `publish` is a fan-in: it runs once, after every build, and reads the successful
  builds' results by task id (a failed build's parameter falls back to its default);
  it saves a checkpoint (under `.graflow/checkpoints`, the default store) once done.

Run it with ``make demo``, ``python examples/release_pipeline.py``, or
``python -m graflow_async run examples.release_pipeline:release``.
"""

from __future__ import annotations

import asyncio
import time

from graflow_async import Event, RetryPolicy, WorkflowResult, run, task, workflow


@task
async def fetch_source() -> dict:
    await asyncio.sleep(0.05)
    return {"repo": "graflow-async", "commit": "9f2c1e7"}


async def _build(platform: str, source: dict, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"{source['repo']}-{source['commit']}-{platform}.tar.gz"


@task
async def build_linux(fetch_source: dict) -> str:
    return await _build("linux", fetch_source, 0.20)


@task
async def build_macos(fetch_source: dict) -> str:
    return await _build("macos", fetch_source, 0.30)


@task
async def build_windows(fetch_source: dict) -> str:
    await asyncio.sleep(0.10)
    raise ConnectionError("windows build runner is offline")


@task
def build_docs(fetch_source: dict) -> str:
    time.sleep(0.15)  # a plain function: it runs in a worker thread, not on the loop
    return f"{fetch_source['repo']}-docs.zip"


_uploads = {"attempts": 0}


@task(inject_context=True, retry_policy=RetryPolicy(max_retries=2, initial_interval=0.2))
async def publish(
    context,
    build_linux: str | None = None,
    build_macos: str | None = None,
    build_windows: str | None = None,
    build_docs: str | None = None,
) -> list[str]:
    _uploads["attempts"] += 1
    if context.attempt == 1:
        raise TimeoutError("upload to the package index timed out")
    artifacts = [a for a in (build_linux, build_macos, build_windows, build_docs) if a]
    await context.channel.set("published", artifacts)
    # a save point: a crash after this resumes with the builds done and published
    await context.checkpoint(metadata={"published": len(artifacts)})
    return artifacts


@task
async def notify(publish: list[str]) -> str:
    return f"released {len(publish)} artifacts: {', '.join(publish)}"


with workflow("release") as release:
    builds = (build_linux | build_macos | build_windows | build_docs).set_group_name("builds")
    fetch_source >> builds.with_execution(policy="best_effort") >> publish >> notify


def show(event: Event) -> None:
    """Print the run as it happens."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    if event.kind == "task_started":
        print(f"{stamp}  ▶ {event.task_id} (attempt {event.attempt})")
    elif event.kind == "task_completed":
        print(f"{stamp}  ✔ {event.task_id} in {event.duration * 1000:.0f} ms")
    elif event.kind == "task_retrying":
        print(f"{stamp}  ↻ {event.task_id} failed ({event.error}); retrying in {event.delay:.1f}s")
    elif event.kind == "task_failed":
        print(f"{stamp}  ✘ {event.task_id}: {event.error}")
    elif event.kind == "checkpoint_saved":
        print(f"{stamp}  ⚑ checkpoint saved: {event.location}")
    elif event.kind == "group_finished":
        verdict = "accepted" if event.success else "failed"
        print(f"{stamp}  ◆ group {event.group_id} {verdict} (failed members: {event.failed or 'none'})")


async def main() -> WorkflowResult:
    result = await run(release, on_event=show)
    print()
    print(f"run {result.run_id}: {result.status}")
    print(f"completed tasks: {', '.join(result.results)}")
    print(f"publish took {_uploads['attempts']} attempts; channel: {result.channel}")
    print(f"output: {result.output}")
    return result


if __name__ == "__main__":
    asyncio.run(main())
