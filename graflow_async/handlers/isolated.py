"""Running a task in another process: the call directory both sides share.

A handler that runs a task elsewhere (the docker handler, or your own: see
``examples/custom_handler.py``) opens a `call_directory` for the call, starts
``python -m graflow_async.handlers.container <directory>`` in the other process, and
takes the task's outcome with `CallDirectory.outcome()`. Inputs and result cross as
msgpack (never pickle): the function is imported there by its import path.

    call.msgpack       what to run: the function's import path, its arguments, the context facts
    ctx.sock           the context's operations, as messages to the run (``inject_context=True``)
    out/reply.msgpack  how it went: a `TaskReply` in the wire envelope workers use

The other process is not trusted. Only ``out/`` need be writable for it (a container
gets the rest read-only); the directory sits in a private (0700) parent, so other users
of this host cannot reach it. The reply is opened without following a link and
without blocking, and must be a regular file within the size cap: a FIFO, a device, a
symlink, a directory or a huge file ends the task with a `TaskFailedError` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from graflow_async.define.docker_options import OUT_DIR
from graflow_async.exceptions import HandlerError, TaskFailedError
from graflow_async.execute.context import adopt_directives
from graflow_async.execute.tracing import active, carrier
from graflow_async.feedback.hitl import FeedbackSuspended
from graflow_async.handlers.code_mounts import MAIN_ALIAS, function_ref
from graflow_async.handlers.relay import ContextRelay
from graflow_async.handlers.sandbox import Sandbox
from graflow_async.wire import envelope
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.messages import TaskReply

CALL_FILE, REPLY_FILE, SOCKET_FILE = "call.msgpack", "reply.msgpack", "ctx.sock"
MAX_FILE_BYTES = 64 << 20  # inputs or a result larger than this are refused
MAX_NESTING = 64


class NoReply(Exception):
    """The other process ended without writing its reply."""


class CallDirectory:
    """The directory of one call, while the other process runs (see `call_directory`)."""

    def __init__(self, path: Path, call: Any, relay: ContextRelay | None, sandbox: Sandbox | None = None) -> None:
        self.path = path
        self.call = call
        self.relay = relay
        self.sandbox = sandbox

    async def violated(self) -> HandlerError:
        """Waits until the other process breaks its sandbox's rules (forever when it has
        no context to break them with); the error that fails the task."""
        if self.relay is None:
            await asyncio.Event().wait()
        assert self.relay is not None
        await self.relay.violated.wait()
        assert self.relay.violation is not None
        return self.relay.violation

    def check_rules(self) -> None:
        """The sandbox's `HandlerError` when the other process broke one of its rules."""
        if self.relay is not None and self.relay.violation is not None:
            raise self.relay.violation

    async def outcome(self) -> Any:
        """The task's return value, or its error raised: `RemoteTaskError` with the type,
        message and traceback of what it raised; `FeedbackSuspended` when its feedback
        wait timed out; `NoReply` when the other process wrote nothing; `TaskFailedError`
        for a reply that is not one. What the task asked of the run's graph (next_task,
        next_iteration, ...) is handed to the call's context."""
        task_id = self.call.task_id
        self.check_rules()
        try:
            reply = await asyncio.to_thread(read_reply, self.path)
        except (ValueError, OSError) as exc:
            raise TaskFailedError(task_id, None, f"task {task_id!r} left an unusable reply: {exc}") from None
        if reply.suspended and self.relay is not None and self.relay.suspended_on is not None:
            raise FeedbackSuspended(self.relay.suspended_on)
        if not reply.ok:
            assert reply.error is not None
            raise reply.error
        refused = self.sandbox.directives_refusal(reply.directives) if self.sandbox is not None else None
        if refused is not None:
            raise refused
        if self.call.context is not None and reply.directives:
            adopt_directives(self.call.context, reply.directives)
        return reply.value

    def local_process(self, python: str = sys.executable) -> tuple[list[str], dict[str, str]]:
        """The command and environment that run this call in a child process of this
        host: the same interpreter and import path (a script's tasks included)."""
        if self.call.func.__module__ == "__main__":  # imported by its alias, from the call directory
            script = getattr(sys.modules["__main__"], "__file__", None)
            if not script:
                raise HandlerError("a task defined in an interactive session cannot run in another process")
            alias = self.path / f"{MAIN_ALIAS}.py"
            if not alias.exists():
                alias.symlink_to(Path(script).resolve())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.path), *(p for p in sys.path if p)])}
        return [python, "-m", "graflow_async.handlers.container", str(self.path)], env


@contextlib.asynccontextmanager
async def call_directory(
    call: Any, *, trace: dict[str, str] | None = None, sandbox: Sandbox | None = None
) -> AsyncIterator[CallDirectory]:
    """A fresh directory holding `call` (a `TaskCall`), its context served on a socket
    there when the task injects one (held to `sandbox`'s rules when given); removed when
    the block ends."""
    private = Path(tempfile.mkdtemp(prefix="graflow-call-"))  # 0700: this user's alone
    path = private / "call"
    if trace is None and active():
        trace = carrier()  # the attempt's span, as the other process's parent
    try:
        path.mkdir(mode=0o755)
        (path / OUT_DIR).mkdir()
        (path / OUT_DIR).chmod(0o777)  # the other process may run as another uid
        write_call(path, call, trace=trace)
        (path / CALL_FILE).chmod(0o644)
        if call.context is None:
            yield CallDirectory(path, call, None, sandbox)
            return
        async with ContextRelay(call.context, str(path / SOCKET_FILE), sandbox) as relay:
            yield CallDirectory(path, call, relay, sandbox)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def write_call(directory: str | os.PathLike[str], call: Any, *, trace: dict[str, str] | None = None) -> None:
    """Write `call` (a `TaskCall`) to `directory`; TaskFailedError naming the task when its
    arguments cannot be serialized."""
    context = call.context
    facts = None
    if context is not None:
        facts = {
            "cycle": context.cycle_count,
            "max_cycles": context.max_cycles,
            "resumed_metadata": context.resumed_metadata,
        }
    doc = {
        "ref": function_ref(call.func),
        "task_id": call.task_id,
        "run_id": call.run_id,
        "attempt": call.attempt,
        "kwargs": call.kwargs,
        "context": facts,
        "trace": trace or {},
    }
    try:
        data = packb(doc, max_nesting=MAX_NESTING)
    except (TypeError, ValueError) as exc:
        raise TaskFailedError(
            call.task_id, exc, f"the arguments of task {call.task_id!r} cannot be sent to another process: {exc}"
        ) from exc
    _write(Path(directory) / CALL_FILE, data)


def read_call(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The call in `directory`, checked (the other process's side)."""
    doc = unpackb(_read(Path(directory) / CALL_FILE), max_nesting=MAX_NESTING)
    if not isinstance(doc, dict):
        raise ValueError("call.msgpack must hold a map")
    for name, kind in (
        ("ref", str),
        ("task_id", str),
        ("run_id", str),
        ("attempt", int),
        ("kwargs", dict),
        ("trace", dict),
    ):
        if not isinstance(doc.get(name), kind):
            raise ValueError(f"call.msgpack: {name} must be {kind.__name__}")
    if doc["context"] is not None and not isinstance(doc["context"], dict):
        raise ValueError("call.msgpack: context must be a map or nil")
    return doc


def write_reply(directory: str | os.PathLike[str], reply: TaskReply) -> None:
    """Write `reply`; a result that cannot be serialized becomes a failure naming its type."""
    try:
        data = envelope.encode(reply)
    except TypeError as exc:
        failure = TypeError(str(exc))
        data = envelope.encode(reply._replace(ok=False, value=None, error=failure, directives=(), retryable=False))
    _write(Path(directory) / OUT_DIR / REPLY_FILE, data)


def read_reply(directory: str | os.PathLike[str]) -> TaskReply:
    """The reply in `directory`; `NoReply` when there is none, ValueError when it is
    malformed or not a regular file within the size cap (never follows a link, never
    blocks on a FIFO)."""
    try:
        data = read_untrusted(Path(directory) / OUT_DIR / REPLY_FILE)
    except FileNotFoundError:
        raise NoReply(f"no {REPLY_FILE}") from None
    reply = envelope.decode(data)
    if not isinstance(reply, TaskReply):
        raise ValueError(f"{REPLY_FILE} holds a {type(reply).__name__}, not a task reply")
    return reply


def _write(path: Path, data: bytes) -> None:
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path.name} would be {len(data)} bytes, more than the {MAX_FILE_BYTES} allowed")
    path.write_bytes(data)


def read_untrusted(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path`, a file another process wrote: ValueError unless it is a
    regular file (not a link, FIFO, device, socket or directory) of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path.name} is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is a {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path.name} is larger than the {limit} bytes allowed")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than the {limit} bytes allowed")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path.name} is larger than the {MAX_FILE_BYTES} bytes allowed")
    return data
