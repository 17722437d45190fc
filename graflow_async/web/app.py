"""Mounting the feedback API, the UI and the runs API on an aiohttp application."""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from graflow_async.define.graph import Workflow
from graflow_async.define.schedules import Schedule
from graflow_async.execute.metrics import Metrics, metrics_response
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.memory import MemoryFeedbackStore
from graflow_async.feedback.notify_config import check_public_url
from graflow_async.logs import library_logger
from graflow_async.run.scheduler import Scheduler
from graflow_async.web.auth import ApiHandler, Auth
from graflow_async.web.feedback.api import FeedbackApi
from graflow_async.web.feedback.ui import FeedbackUi
from graflow_async.web.hosts import HostCheck
from graflow_async.web.http import MAX_BODY, ApiError, server_options
from graflow_async.web.runs.api import RunsApi
from graflow_async.web.runs.manager import RunManager
from graflow_async.web.runs.ui import RunsUi
from graflow_async.web.runs.views import RunViews
from graflow_async.web.schedules import Schedules, scheduler_lifetime

DEFAULT_FEEDBACK_DIR = ".graflow/feedback"


@dataclass(frozen=True, slots=True)
class WebState:
    """What `setup` mounted, kept on the app as ``app[WEB_STATE]``."""

    store: FeedbackStore
    runs: RunManager
    auth: Auth
    prefix: str
    owns_store: bool
    metrics: Metrics
    hosts: HostCheck
    public_url: str | None = None
    scheduler: Scheduler | None = None

    async def store_lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """Closes the store `setup` opened, after the runs using it have stopped."""
        try:
            yield
        finally:
            if self.owns_store:
                await self.store.aclose()


WEB_STATE = web.AppKey("graflow_async.web", WebState)


def default_feedback_store() -> FeedbackStore:
    """`FileFeedbackStore(".graflow/feedback")` when available, else a memory store."""
    try:
        module = importlib.import_module("graflow_async.feedback.file")
    except ModuleNotFoundError:
        library_logger().warning("FileFeedbackStore is not available: feedback is kept in memory only")
        return MemoryFeedbackStore()
    store: FeedbackStore = module.FileFeedbackStore(DEFAULT_FEEDBACK_DIR)
    return store


def _workflows(workflows: Mapping[str, Workflow] | Iterable[Workflow] | None) -> dict[str, Workflow]:
    if workflows is None:
        return {}
    pairs = workflows.items() if isinstance(workflows, Mapping) else ((wf.name, wf) for wf in workflows)
    found: dict[str, Workflow] = {}
    for name, wf in pairs:
        if not isinstance(wf, Workflow):
            raise TypeError(f"workflow {name!r} is {type(wf).__name__}, not a Workflow")
        found[name] = wf
    return found


def _redis_transport(transport: Any) -> Any:
    """`transport` when it is a Redis one (its queue figures become gauges), else None."""
    if transport is None:
        return None
    try:
        from graflow_async.transports.redis import RedisStreamsTransport
    except ImportError:  # no redis client installed: it cannot be one
        return None
    return transport if isinstance(transport, RedisStreamsTransport) else None


def _prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"prefix must start with '/', got {prefix!r}")
    return prefix


def setup(
    app: web.Application,
    *,
    workflows: Mapping[str, Workflow] | Iterable[Workflow] | None = None,
    feedback_store: FeedbackStore | None = None,
    checkpoint_store: Any = None,
    transport: Any = None,
    auth_token: str | None = None,
    prefix: str = "",
    public_url: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    schedules: Iterable[Schedule] | Scheduler | None = None,
) -> None:
    """Mount the feedback API and UI and the runs API and UI on `app` (SPEC sections 5 and 8).

    `workflows` (``{name: workflow}``, or workflows keyed by their names) are those
    ``POST /api/runs`` may start and answers may resume. Runs use `feedback_store`
    (default: ``FileFeedbackStore(".graflow/feedback")``), `checkpoint_store` and
    `transport`. With `auth_token`, /api and /ui need ``Authorization: Bearer <token>``
    (the UI also takes a session from ``/ui/login``), and so does ``GET /metrics``
    (Prometheus metrics of the runs the app drives, and the queue gauges when `transport`
    is a Redis one; see `graflow_async.execute.metrics`). Routes sit under `prefix`.
    `public_url` is where people reach the app from outside, prefix included (for
    example ``https://ops.example.com/wf``): notifications of the runs the app drives
    then carry ``respond_url``, the UI page of the request under it. Run records live
    in the feedback store's backend (see `runs`).

    `schedules` (`Schedule`s, or a `Scheduler` of one's own) run while the app runs, their
    runs started like the app's (its `transport`, `checkpoint_store` and feedback store),
    and are listed by ``GET /api/schedules`` and ``/ui/schedules/``.

    Every route answers only requests for the app's own names (`hosts`: DNS rebinding
    and cross-site requests get 421 and 403): ``localhost``, IP addresses, the host of
    `public_url` and `allowed_hosts` (names; ``".example.com"`` for a domain and its
    subdomains; ``["*"]`` for no check). Without `allowed_hosts` the check applies only
    when there is no `auth_token`, so an app with a token keeps answering under any name.

    Raises RuntimeError when `app` already has them, ValueError for a bad prefix, token,
    public URL or allowed host.
    """
    if WEB_STATE in app:
        raise RuntimeError("graflow_async.web is already set up on this application")
    prefix = _prefix(prefix)
    public_url = None if public_url is None else check_public_url(public_url)
    auth = Auth(auth_token, prefix)
    hosts = HostCheck(allowed_hosts, public_url, token=auth.required)
    owns_store = feedback_store is None
    store = default_feedback_store() if feedback_store is None else feedback_store
    options = {k: v for k, v in (("checkpoint_store", checkpoint_store), ("transport", transport)) if v is not None}
    metrics = Metrics(transport=_redis_transport(transport))
    runs = RunManager(store, _workflows(workflows), options, metrics, public_url)
    scheduler = _scheduler(schedules, store, checkpoint_store, transport)
    state = WebState(store, runs, auth, prefix, owns_store, metrics, hosts, public_url, scheduler)
    app[WEB_STATE] = state
    app.cleanup_ctx.append(state.store_lifetime)  # cleanup contexts exit in reverse order
    app.cleanup_ctx.append(runs.lifetime)
    if scheduler is not None:  # stopped before the store it records runs in is closed
        app.cleanup_ctx.append(functools.partial(scheduler_lifetime, scheduler))
    app.on_shutdown.append(runs.shutdown)
    _add_routes(app, state)


def _scheduler(schedules: Any, store: FeedbackStore, checkpoint_store: Any, transport: Any) -> Scheduler | None:
    if schedules is None or isinstance(schedules, Scheduler):
        return schedules
    return Scheduler(schedules, transport=transport, checkpoint_store=checkpoint_store, feedback_store=store)


def _add_routes(app: web.Application, state: WebState) -> None:
    p, auth = state.prefix, state.auth
    api = FeedbackApi(state.store, state.runs)
    runs = RunsApi(state.runs, p)
    ui = FeedbackUi(state.store, state.runs, auth, p)
    runs_ui = RunsUi(ui, runs.views)
    schedules = Schedules(state.scheduler, runs.views, ui, p)

    def add(method: str, path: str, handler: ApiHandler) -> None:
        guarded = state.hosts.guard(handler)  # every route: see hosts
        if method == "GET":
            app.router.add_get(f"{p}{path}", guarded)  # and HEAD
        else:
            app.router.add_route(method, f"{p}{path}", guarded)

    add("GET", "/health", api.health)
    add("GET", "/metrics", auth.api(functools.partial(metrics_response, state.metrics)))
    add("GET", "/api/feedback", auth.api(api.list))
    add("GET", "/api/feedback/{feedback_id}", auth.api(api.show))
    add("POST", "/api/feedback/{feedback_id}/respond", auth.api(api.respond))
    add("DELETE", "/api/feedback/{feedback_id}", auth.api(api.cancel))
    add("POST", "/api/runs", auth.api(runs.create))
    add("GET", "/api/runs", auth.api(runs.list))
    add("GET", "/api/runs/{run_id}", auth.api(runs.show))
    add("POST", "/api/runs/{run_id}/cancel", auth.api(runs.cancel))
    add("GET", "/api/runs/{run_id}/events", auth.api(runs.events))
    add("GET", "/ui", auth.ui(ui.home))
    add("GET", "/ui/", auth.ui(ui.home))
    add("GET", "/ui/feedback", auth.ui(ui.home))
    add("GET", "/ui/feedback/", auth.ui(ui.list))
    add("GET", "/ui/feedback/{feedback_id}", auth.ui(ui.show))
    add("POST", "/ui/feedback/{feedback_id}", auth.ui(ui.submit))
    add("GET", "/ui/runs", auth.ui(runs_ui.home))
    add("GET", "/ui/runs/", auth.ui(runs_ui.list))
    add("GET", "/ui/runs/{run_id}", auth.ui(runs_ui.show))
    add("GET", "/ui/runs/{run_id}/events", auth.ui(runs_ui.events))
    add("GET", "/ui/static/run.js", auth.ui(runs_ui.script))
    add("GET", "/api/schedules", auth.api(schedules.api))
    add("GET", "/ui/schedules", auth.ui(schedules.home))
    add("GET", "/ui/schedules/", auth.ui(schedules.page))
    add("GET", "/ui/login", ui.login_page)
    add("POST", "/ui/login", ui.login)
    add("POST", "/ui/logout", auth.ui(ui.logout))


def create_app(**kwargs: Any) -> web.Application:
    """A new `aiohttp.web.Application` with `setup(app, **kwargs)`: request bodies up to
    1 MiB, and connections closed when a request takes longer than
    `http.REQUEST_TIMEOUT` to arrive (`http.server_options`; pass those to
    ``web.Application(handler_args=...)`` when you `setup` an app of your own)."""
    app = web.Application(client_max_size=MAX_BODY, handler_args=server_options())
    setup(app, **kwargs)
    return app


async def start_run(app: web.Application, workflow: str, inputs: Mapping[str, Any] | None = None) -> str:
    """Start `workflow` (a key of the `workflows` given to `setup`) on `app`, as
    ``POST /api/runs`` does, from a handler of your own; returns the run id. The run is
    listed, shown, followed, answered and resumed like any run of the app. KeyError for
    a workflow the app does not serve; RuntimeError when `app` is not running."""
    state = app[WEB_STATE]
    if workflow not in state.runs.workflows:
        raise KeyError(f"unknown workflow {workflow!r} (served: {', '.join(sorted(state.runs.workflows))})")
    try:
        live = await state.runs.start(workflow, dict(inputs or {}))
    except ApiError as exc:
        raise RuntimeError(exc.message) from None
    return live.run_id


async def get_run(app: web.Application, run_id: str) -> dict[str, Any] | None:
    """What ``GET /api/runs/{run_id}`` answers, or None for an unknown run."""
    return await RunViews(app[WEB_STATE].runs).show(run_id)
