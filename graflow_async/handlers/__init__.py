"""Task handlers: how a task's function is actually run (SPEC section 8).

A handler is any object with ``async def run(self, call: TaskCall) -> Any``. The
built-in ``direct`` handler awaits async functions in the event loop and runs plain
functions in a worker thread of the run's pool; ``inline`` calls plain functions on
the event loop itself; ``docker`` runs each attempt in a fresh container (the
``docker`` extra). Register your own with `register_handler(name, handler)` or pass an
instance as ``@task(handler=...)``.

    docker.py       the docker handler (aiodocker); its options are checked where a task
                    declares them (`define.docker_options`)
    isolated.py     a call run in another process: files in, a file out (`call_directory`)
    relay.py        the context of such a call, relayed over a Unix socket
    container.py    ``python -m graflow_async.handlers.container``: the other end
    code_mounts.py  what a container mounts so that it can import the task's code
"""

from __future__ import annotations

from graflow_async.execute.handlers import (
    DirectHandler,
    InlineHandler,
    TaskCall,
    TaskHandler,
    get_handler,
    register_handler,
    register_lazy,
)
from graflow_async.execute.threads import call_function


def _docker() -> TaskHandler:
    from graflow_async.handlers.docker import DockerHandler

    return DockerHandler()


register_lazy("docker", _docker)

__all__ = [
    "DirectHandler",
    "InlineHandler",
    "TaskCall",
    "TaskHandler",
    "call_function",
    "get_handler",
    "register_handler",
]
