"""Command line: ``python -m graflow_async <command>`` (also the ``graflow-async`` script).

    run MODULE:ATTR [--no-progress]    run a workflow; exit 0 completed, 3 suspended,
                                       1 failed, 2 usage or import error
    resume LOCATION [--workflow MODULE:ATTR] [--no-progress]
                                       continue a run from a checkpoint (same exit codes)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .events import Event
from .exceptions import GraflowError
from .graph import Workflow
from .runner import WorkflowResult, run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SUSPENDED = 0, 1, 2, 3


class UsageError(Exception):
    """A bad command line or a target that cannot be imported (exit code 2)."""


def load_object(ref: str) -> Any:
    """Import ``module:attr`` (attr may be dotted); the current directory is importable."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:ATTR, got {ref!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


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
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
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
    from .checkpoints import resume

    wf = load_workflow(args.workflow) if args.workflow else None
    start = functools.partial(resume, args.location, workflow=wf)
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
    p.add_argument("--workflow", metavar="MODULE:ATTR",
                   help="the workflow, when the checkpoint does not record an importable one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_resume_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The CLI reports a failure in one line; structlog's copy of it is noise here
    # unless asked for (GRAFLOW_LOG_LEVEL=warning or info or debug).
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "critical")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage message
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        return asyncio.run(args.handler(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GraflowError as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
