"""The web side of graflow-async: the feedback REST API and UI, and runs over HTTP.

    from aiohttp import web
    from graflow_async.web import create_app, setup

    app = create_app(workflows={"release": wf}, auth_token="s3cret")
    web.run_app(app)

    # or mount on an application of your own:
    setup(app, workflows={"release": wf}, prefix="/graflow")

Routes (under the prefix): ``GET /health``; ``GET /metrics`` (Prometheus); ``GET /api/feedback``,
``GET|DELETE /api/feedback/{id}``, ``POST /api/feedback/{id}/respond``;
``POST /api/runs``, ``GET /api/runs/{id}``, ``GET /api/runs/{id}/events`` (SSE);
``/ui/feedback/`` and ``/ui/feedback/{id}`` (HTML), ``/ui/login``. Needs the ``web``
extra (aiohttp, jinja2).
"""

from .app import WEB_STATE, WebState, create_app, setup

__all__ = ["WEB_STATE", "WebState", "create_app", "setup"]
