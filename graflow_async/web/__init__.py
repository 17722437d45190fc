"""The web side of graflow-async: the feedback REST API and UI, and runs over HTTP.

    from aiohttp import web
    from graflow_async.web import create_app, setup

    app = create_app(workflows={"release": wf}, auth_token="s3cret")
    web.run_app(app)

    # or mount on an application of your own, and start runs from your handlers:
    setup(app, workflows={"release": wf}, prefix="/graflow", public_url="https://ops.example.com/graflow")
    run_id = await start_run(app, "release", {"version": "2.1"})

Routes (under the prefix): ``GET /health``; ``GET /metrics`` (Prometheus); ``GET /api/feedback``,
``GET|DELETE /api/feedback/{id}``, ``POST /api/feedback/{id}/respond``;
``POST /api/runs``, ``GET /api/runs``, ``GET /api/runs/{id}``, ``POST /api/runs/{id}/cancel``,
``GET /api/runs/{id}/events`` (SSE); ``/ui/feedback/``, ``/ui/feedback/{id}``, ``/ui/runs/``,
``/ui/runs/{id}`` (HTML), ``/ui/login``. Needs the ``web`` extra (aiohttp, jinja2).

Without an ``auth_token`` (or with ``allowed_hosts``) the routes answer only requests
for the app's own names and origin: ``localhost``, IP addresses, the host of
``public_url`` and ``allowed_hosts`` (`hosts`); others get 421 (Host) or 403 (Origin).
"""

from graflow_async.web.app import WEB_STATE, WebState, create_app, get_run, setup, start_run

__all__ = ["WEB_STATE", "WebState", "create_app", "get_run", "setup", "start_run"]
