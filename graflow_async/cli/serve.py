"""``python -m graflow_async serve``: the feedback API and UI (and runs) over HTTP.

    serve [--host 127.0.0.1] [--port 8080] [--feedback-store DIR | redis://URL]
          [--checkpoint-store DIR | s3://BUCKET/PREFIX] [--auth-token TOKEN]
          [--workflow MODULE:ATTR ...] [--public-url URL] [--allowed-host NAME ...] [--no-adopt]
          [--schedule SPEC ...] [--schedule-timezone TZ] [--schedule-catch-up]

The token defaults to the ``GRAFLOW_AUTH_TOKEN`` environment variable. Without a token,
or with ``--allowed-host``, requests must name the server (`hosts`): ``localhost``, an
IP address, the host of ``--public-url``, each ``--allowed-host`` (``*``: any), and the
name it listens on (``--host``: that name, or the machine's host name for ``0.0.0.0``).
Runs until interrupted (Ctrl-C) or sent SIGTERM; in-flight runs are cancelled on the way out.
``--schedule`` runs schedules (`cli.schedules`): their runs go to the Redis of a Redis
``--feedback-store`` (workers run their tasks), else run here; the app lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from graflow_async.cli.adopting import adopting
from graflow_async.cli.schedules import add_schedule_arguments, load_schedules

if TYPE_CHECKING:
    from graflow_async.define.graph import Workflow
    from graflow_async.feedback.base import FeedbackStore

TOKEN_ENV = "GRAFLOW_AUTH_TOKEN"


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to an argparse subparsers object; its handler is `serve`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve the feedback REST API and UI (and runs of --workflow workflows)"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--feedback-store",
        metavar="DIR|redis://URL",
        help="feedback store: a directory, or a Redis URL (default .graflow/feedback)",
    )
    p.add_argument(
        "--checkpoint-store",
        metavar="DIR|s3://BUCKET/PREFIX",
        help="where runs started or resumed here write checkpoints",
    )
    p.add_argument(
        "--auth-token", metavar="TOKEN", help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV})"
    )
    p.add_argument(
        "--workflow",
        metavar="MODULE:ATTR",
        action="append",
        default=[],
        help="a workflow runs may start and answers may resume (repeatable)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="where people reach this server (e.g. https://ops.example.com): notifications link to the UI there",
    )
    p.add_argument(
        "--allowed-host",
        metavar="NAME",
        action="append",
        default=[],
        help="another name clients reach this server by (repeatable; .example.com: with subdomains; *: any)",
    )
    p.add_argument(
        "--no-adopt",
        action="store_true",
        help="with a Redis --feedback-store: do not adopt the namespace's durable runs whose driver died",
    )
    add_schedule_arguments(p)
    p.set_defaults(handler=serve)
    return p


def load_workflows(refs: list[str]) -> dict[str, Workflow]:
    """``{wf.name: wf}`` for each MODULE:ATTR; UsageError for a duplicate name."""
    from graflow_async.cli.main import UsageError, load_workflow

    found: dict[str, Workflow] = {}
    for ref in refs:
        wf = load_workflow(ref)
        if wf.name in found:
            raise UsageError(f"two workflows are named {wf.name!r} ({ref} and another --workflow)")
        found[wf.name] = wf
    return found


def open_feedback_store(spec: str | None) -> FeedbackStore | None:
    """The store `--feedback-store` names: a directory or a Redis URL (None: the app's default)."""
    from graflow_async.cli.main import UsageError
    from graflow_async.feedback.hitl import store_at as open_store

    if not spec:
        return None
    try:
        return open_store(spec)
    except ImportError as exc:
        raise UsageError(f"--feedback-store {spec}: not available in this build ({exc})") from exc


async def serve(args: argparse.Namespace) -> int:
    """Serve until cancelled or SIGTERM; returns the exit code (0)."""
    from graflow_async.web.app import create_app

    workflows = load_workflows(args.workflow)
    schedules = load_schedules(args)
    token = args.auth_token or os.environ.get(TOKEN_ENV) or None
    public_url = _public_url(args.public_url)
    store = open_feedback_store(args.feedback_store)
    async with contextlib.AsyncExitStack() as stack:
        if store is not None:
            stack.push_async_callback(store.aclose)
        scheduler = await _scheduler(stack, schedules, store, args)
        app = create_app(
            workflows=workflows,
            feedback_store=store,
            checkpoint_store=args.checkpoint_store,
            auth_token=token,
            public_url=public_url,
            allowed_hosts=_allowed_hosts(args.host, args.allowed_host, token),
            schedules=scheduler,
        )
        await _serve_app(app, args, workflows, token, store)
    return 0


async def _scheduler(
    stack: contextlib.AsyncExitStack, schedules: list[Any], store: FeedbackStore | None, args: argparse.Namespace
) -> Any:
    """The `Scheduler` of ``--schedule`` (None without): its runs go to the Redis of a Redis
    ``--feedback-store`` (where workers run their tasks), else run in this process."""
    if not schedules:
        return None
    from graflow_async.feedback.redis import RedisFeedbackStore
    from graflow_async.run.scheduler import Scheduler

    transport = None
    if isinstance(store, RedisFeedbackStore):
        from graflow_async.transports.redis import RedisStreamsTransport

        transport = await stack.enter_async_context(
            RedisStreamsTransport(args.feedback_store, namespace=store.keys.namespace)
        )
    return Scheduler(schedules, transport=transport, checkpoint_store=args.checkpoint_store, feedback_store=store)


async def _serve_app(
    app: Any, args: argparse.Namespace, workflows: dict[str, Workflow], token: str | None, store: FeedbackStore | None
) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            print(
                f"graflow-async serving on http://{_hostport(host, port)}/ui/feedback/"
                f" ({len(workflows)} workflows, auth {'on' if token else 'off'})",
                flush=True,
            )
        async with adopting(*_adoption(store, args.feedback_store, args.no_adopt)):
            await _until_terminated()
    finally:
        await runner.cleanup()


def _adoption(store: FeedbackStore | None, spec: str | None, no_adopt: bool) -> tuple[str | None, str]:
    """Where `serve` adopts durable runs whose driver died (SPEC 10): the Redis of its
    feedback store (`spec`, its URL), in its namespace; (None, ...): nowhere."""
    from graflow_async.feedback.redis import RedisFeedbackStore

    if no_adopt or spec is None or not isinstance(store, RedisFeedbackStore):
        return None, ""
    return spec, store.keys.namespace


def _public_url(url: str | None) -> str | None:
    from graflow_async.cli.main import UsageError
    from graflow_async.feedback.notify_config import check_public_url

    try:
        return None if url is None else check_public_url(url)
    except ValueError as exc:
        raise UsageError(f"--public-url: {exc}") from None


def _allowed_hosts(bound: str, extra: list[str], token: str | None) -> list[str] | None:
    """`allowed_hosts` for the app: the names given and those it listens on, or None (no
    check) when a token is set and no names were given, as for an app of one's own."""
    from graflow_async.cli.main import UsageError
    from graflow_async.web.hosts import host_names, served_names

    if token and not extra:
        return None
    try:
        return [*host_names(extra), *served_names(bound)]
    except ValueError as exc:
        raise UsageError(f"--allowed-host: {exc}") from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _until_terminated() -> None:
    """Wait for SIGTERM (then return) or for cancellation (Ctrl-C under asyncio.run)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # not the main thread, or not a Unix loop
        await stop.wait()
        return
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
