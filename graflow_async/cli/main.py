"""Command line: ``python -m graflow_async <command>`` (also the ``graflow-async`` script).

run MODULE:ATTR [--no-progress]    run a workflow; exit 0 completed, 3 suspended,
                                   1 failed, 2 usage or import error
resume LOCATION [--workflow MODULE:ATTR] [--force] [--no-progress]
                                   continue a run from a checkpoint (same exit codes)
recover RUN_ID [--checkpoint-store DIR | --redis-url URL] [--workflow MODULE:ATTR] [--no-progress]
                                   carry on a durable run whose process died (same exit codes)
worker --redis-url URL --import MODULE ... [--no-adopt] [--schedule SPEC ...]
                                   run tasks from the Redis task stream, adopt
                                   durable runs whose driver died, run schedules
queue-stats --redis-url URL        the task stream's length, pending entries, consumers
serve --port P ...                 the feedback REST API and UI
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import math
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from graflow_async import loading
from graflow_async.cli.adopting import adopting
from graflow_async.cli.schedules import add_schedule_arguments, load_schedules, scheduling
from graflow_async.define.graph import Workflow
from graflow_async.events import Event
from graflow_async.exceptions import GraflowError
from graflow_async.run.runner import WorkflowResult, run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SUSPENDED = 0, 1, 2, 3


class UsageError(Exception):
    """A bad command line or a target that cannot be imported (exit code 2)."""


def load_object(ref: str) -> Any:
    """`loading.load_object`, a failure a usage error."""
    try:
        return loading.load_object(ref)
    except LookupError as exc:
        raise UsageError(str(exc)) from exc


def load_workflow(ref: str) -> Workflow:
    obj = load_object(ref)
    if callable(obj) and not isinstance(obj, Workflow):
        obj = obj()
    if not isinstance(obj, Workflow):
        raise UsageError(f"{ref} is {type(obj).__name__}, not a workflow")
    return obj


class _Progress:
    """A rich progress bar fed by run events (only on a terminal)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar = self.progress.add_task("running", total=total or None)

    def __call__(self, event: Event) -> None:
        if event.kind == "task_completed":
            self.progress.advance(self.bar)
        elif event.kind in ("task_started", "task_retrying", "task_failed") and event.task_id:
            self.progress.update(self.bar, description=f"{event.kind.split('_')[1]} {event.task_id}")


def _summary(result: WorkflowResult) -> str:
    lines = [f"run {result.run_id}: {result.status}, {len(result.results)} tasks completed"]
    if result.status == "suspended":
        lines.append(f"checkpoint: {result.checkpoint}")
        lines.extend(f"waiting for feedback {r.feedback_id}: {r.prompt}" for r in result.pending_feedback)
    else:
        lines.append(f"output: {result.output!r}")
    return "\n".join(lines)


async def _with_progress(total: int, show: bool, start: Callable[..., Awaitable[WorkflowResult]]) -> int:
    if show and sys.stderr.isatty():
        progress = _Progress(total)
        with progress.progress:
            result = await start(on_event=progress)
    else:
        result = await start()
    print(_summary(result))
    return EXIT_SUSPENDED if result.status == "suspended" else EXIT_OK


async def _run_command(args: argparse.Namespace) -> int:
    wf = load_workflow(args.target)
    return await _with_progress(len(wf), not args.no_progress, functools.partial(run, wf))


async def _resume_command(args: argparse.Namespace) -> int:
    from graflow_async.run.resume import resume

    wf = load_workflow(args.workflow) if args.workflow else None
    start = functools.partial(resume, args.location, workflow=wf, force=args.force)
    return await _with_progress(len(wf) if wf else 0, not args.no_progress, start)


async def _recover_command(args: argparse.Namespace) -> int:
    from graflow_async.run.durable import recover

    wf = load_workflow(args.workflow) if args.workflow else None
    if not args.redis_url:
        start = functools.partial(recover, args.run_id, workflow=wf, checkpoint_store=args.checkpoint_store)
        return await _with_progress(len(wf) if wf else 0, not args.no_progress, start)
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(args.redis_url, namespace=args.namespace) as transport:
        start = functools.partial(
            recover, args.run_id, workflow=wf, transport=transport, checkpoint_store=args.checkpoint_store
        )
        return await _with_progress(len(wf) if wf else 0, not args.no_progress, start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graflow-async", description="graflow-async workflows")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run", help="run a workflow given as MODULE:ATTR")
    p.add_argument("target", metavar="MODULE:ATTR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_command)
    p = commands.add_parser("resume", help="continue a run from a checkpoint")
    p.add_argument("location", help="a checkpoint path or s3:// URI")
    p.add_argument(
        "--workflow", metavar="MODULE:ATTR", help="the workflow, when the checkpoint does not record an importable one"
    )
    p.add_argument("--force", action="store_true", help="run it even if the run has completed since")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_resume_command)
    p = commands.add_parser("recover", help="carry on a durable run whose process died")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--checkpoint-store", metavar="DIR", help="where the run journals (default .graflow/checkpoints)")
    p.add_argument("--redis-url", help="the Redis of a durable run on Redis (instead of --checkpoint-store)")
    p.add_argument("--namespace", default="graflow", help="its key namespace (default graflow)")
    p.add_argument("--workflow", metavar="MODULE:ATTR", help="the workflow, if not the one the run recorded")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_recover_command)
    _add_worker_command(commands)
    p = commands.add_parser("queue-stats", help="print the task stream's figures")
    _redis_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_queue_stats_command)

    from graflow_async.cli.serve import add_serve_command

    add_serve_command(commands)
    return parser


def _add_worker_command(commands: Any) -> None:
    p = commands.add_parser("worker", help="run tasks from the Redis task stream")
    _redis_arguments(p)
    p.add_argument("--worker-id", help="consumer name (default: host-pid)")
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE at start so its tasks can run here (repeatable)",
    )
    p.add_argument("--concurrency", type=int, default=64, help="tasks run at once (default 64)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads that plain (sync) task functions run in (default: Python's "
        "ThreadPoolExecutor default, min(32, CPUs + 4))",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM (default 30)",
    )
    p.add_argument(
        "--secret-file",
        metavar="PATH",
        help="shared secret(s), one per line (the first signs): entries not signed with one of "
        "them are dead-lettered unread (default: GRAFLOW_SECRET, if set)",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop: uvloop when it is installed (auto, the default; the redis "
        "extra brings it), or asyncio's own",
    )
    p.add_argument(
        "--context-timeout",
        type=float,
        default=300.0,
        help="seconds a task waits for its run to answer a context request before it "
        "concludes the run has ended (default 300; feedback waits add their own timeout)",
    )
    p.add_argument(
        "--no-adopt",
        action="store_true",
        help="do not adopt durable runs of the namespace whose driver died (SPEC 10)",
    )
    add_schedule_arguments(p)
    p.set_defaults(handler=_worker_command)


def _redis_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="redis://host:port/db (default redis://localhost:6379/0)")
    p.add_argument("--redis-host", help="instead of --redis-url")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, default=0)
    p.add_argument("--namespace", default="graflow", help="key namespace (default graflow)")


def _redis_url(args: argparse.Namespace) -> str:
    if args.redis_url:
        return str(args.redis_url)
    return f"redis://{args.redis_host or 'localhost'}:{args.redis_port}/{args.redis_db}"


async def _worker_command(args: argparse.Namespace) -> int:
    from graflow_async.execute.worker import run_worker

    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    for option in ("grace_period", "context_timeout"):
        value = getattr(args, option)
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"--{option.replace('_', '-')} must be a positive number of seconds")
    secret = None
    if args.secret_file:
        from graflow_async.transports.signing import read_secret_file

        try:
            secret = read_secret_file(args.secret_file)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--secret-file: {exc}") from exc
    loading.importable_cwd()
    imports = list(dict.fromkeys([*args.imports, *(spec.module for spec in args.schedules)]))  # a schedule's too
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise UsageError(f"cannot import {module!r}: {type(exc).__name__}: {exc}") from exc
    schedules = load_schedules(args)
    async with (
        adopting(None if args.no_adopt else _redis_url(args), args.namespace, secret),
        scheduling(schedules, _redis_url(args), args.namespace, secret),
    ):
        return await run_worker(
            _redis_url(args),
            namespace=args.namespace,
            worker_id=args.worker_id,
            imports=imports,
            concurrency=args.concurrency,
            metrics_port=args.metrics_port,
            grace_period=args.grace_period,
            context_timeout=args.context_timeout,
            secret=secret,
            threads=args.threads,
        )


async def _queue_stats_command(args: argparse.Namespace) -> int:
    import json

    from graflow_async.execute.metrics import queue_stats
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(_redis_url(args), namespace=args.namespace) as transport:
        stats = await queue_stats(transport)
    if args.json:
        print(json.dumps(stats))
        return EXIT_OK
    print(
        f"stream {stats['stream']}: {stats['length']} entries, {stats['pending']} pending, "
        f"{stats['lag']} not yet delivered, {stats['dead_letters']} dead letters"
    )
    for c in stats["consumers"]:
        print(f"  consumer {c['name']}: {c['pending']} pending, idle {c['idle_ms']} ms")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage message
        return EXIT_USAGE if exc.code else EXIT_OK
    # `run` and `resume` report a failure in one line, so structlog's copy of it is noise
    # there; workers and servers log their life at INFO. GRAFLOW_LOG_LEVEL overrides both.
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "critical" if args.command in ("run", "resume", "recover") else "info")
    try:
        code = _loop_runner(args.loop if args.command == "worker" else "asyncio")(args.handler(args))
        if args.command == "worker":
            _leave_stuck_threads(code)
        return code
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GraflowError as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """`asyncio.run`, or `uvloop.run` (the worker's hot loop costs less there: about a
    quarter of a worker's CPU per task of a chain through Redis)."""
    if choice == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return asyncio.run
    return uvloop.run


def _leave_stuck_threads(code: int) -> None:
    """A plain function still running past a worker's grace period cannot be stopped, and
    Python's exit would wait for its thread: exit now (its task was handed back)."""
    import threading

    stuck = [t for t in threading.enumerate() if t.name.startswith("graflow-task") and t.is_alive()]
    if stuck:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
