"""The other process's side of an isolated call (a container, or a subprocess):

    python -m graflow_async.handlers.container <call directory>

Reads the call, imports the function by its import path, runs it (with a context whose
operations go back over the call directory's socket when the task injects one) and
writes its `TaskReply`. Exits 0 whenever a reply was written, the task's own failure
included; anything else (killed, out of memory, ``os._exit``) leaves no reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graflow_async.define.tasks import Task
from graflow_async.execute.context import TaskContext
from graflow_async.feedback.hitl import FeedbackSuspended
from graflow_async.handlers.isolated import SOCKET_FILE, read_call, write_reply
from graflow_async.handlers.relay import SocketPort
from graflow_async.wire.envelope import valid_carrier
from graflow_async.wire.messages import TaskMessage, TaskReply


def load_function(ref: str) -> Any:
    """The function at ``module:qualname`` (the undecorated one for a `@task`)."""
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname:
        raise ImportError(f"{ref!r} is not a module:qualname import path")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.func if isinstance(obj, Task) else obj


async def run_call(directory: Path) -> TaskReply:
    """Run the call in `directory`; its reply (never raises for the task's own failure)."""
    start = time.perf_counter()
    call = read_call(directory)
    with _trace_context(valid_carrier(call["trace"]) or {}):
        return await _run(directory, call, start)


@contextlib.contextmanager
def _trace_context(carrier: dict[str, str]) -> Iterator[None]:
    """The caller's trace context: as ``TRACEPARENT`` for any tool, and as the current
    OpenTelemetry context when opentelemetry is importable here."""
    if "traceparent" in carrier:
        os.environ["TRACEPARENT"] = carrier["traceparent"]
    try:
        from opentelemetry import context, propagate
    except ImportError:
        yield
        return
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


async def _run(directory: Path, call: dict[str, Any], start: float) -> TaskReply:
    message = TaskMessage(call["run_id"], call["task_id"], 0, call["attempt"], "", call["kwargs"])
    port: SocketPort | None = None
    context: TaskContext | None = None
    try:
        func = load_function(call["ref"])
        if call["context"] is not None:
            facts = call["context"]
            message = message._replace(
                cycle=int(facts["cycle"]),
                max_cycles=int(facts["max_cycles"]),
                resumed_metadata=facts.get("resumed_metadata"),
            )
            port = SocketPort()
            await port.open(str(directory / SOCKET_FILE))
            context = TaskContext(port, message)
        args = (context,) if context is not None else ()
        value = func(*args, **call["kwargs"])
        if inspect.isawaitable(value):
            value = await value
    except FeedbackSuspended as exc:
        return _reply(message, start, ok=False, error=exc, suspended=True)
    except Exception as exc:
        return _reply(message, start, ok=False, error=exc)
    finally:
        if port is not None:
            await port.close()
    directives = context.directives if context is not None else ()
    return _reply(message, start, ok=True, value=value, directives=directives)


def _reply(message: TaskMessage, start: float, **fields: Any) -> TaskReply:
    return TaskReply(
        message.run_id,
        message.node,
        message.attempt,
        duration=time.perf_counter() - start,
        cycle=message.cycle,
        task_id=message.task_id,
        **fields,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m graflow_async.handlers.container <call directory>", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    write_reply(directory, asyncio.run(run_call(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
