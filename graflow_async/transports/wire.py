"""The wire format of messages that leave the process: msgpack envelopes, never pickle.

A `TaskMessage` travels without its in-process attachments (the task object and the
context): a worker finds the function by ``task_ref`` and builds its own context. A
`TaskReply`'s exception cannot travel; its type name, message and traceback do, and
come back as `RemoteTaskError` (a timeout as `TaskTimeoutError`). Anything that is not
one of these messages travels as a plain msgpack value.
"""

from __future__ import annotations

import traceback
from typing import Any

from ..codec import packb, unpackb
from ..exceptions import RemoteTaskError, TaskFailedError, TaskTimeoutError
from ..messages import RetryDue, TaskMessage, TaskReply

_TASK, _REPLY, _RETRY, _RAW = "task", "reply", "retry", "raw"
_TASK_FIELDS = ("run_id", "task_id", "node", "attempt", "reply_to", "kwargs", "timeout", "task_ref",
                "lease_timeout", "max_deliveries", "inject_context")


class MalformedMessage(ValueError):
    """Bytes that are not a graflow-async envelope (garbage, a pickle, another tool's)."""


def encode(message: Any) -> bytes:
    """Envelope bytes for `message`; TypeError naming the value that cannot travel."""
    if isinstance(message, TaskMessage):
        doc = {"t": _TASK, **{name: getattr(message, name) for name in _TASK_FIELDS}}
        try:
            return packb(doc)
        except TypeError as exc:
            raise TypeError(f"the arguments of task {message.task_id!r} cannot be sent: {exc}") from exc
    if isinstance(message, TaskReply):
        return packb({
            "t": _REPLY, "run_id": message.run_id, "node": message.node, "attempt": message.attempt,
            "ok": message.ok, "value": message.value, "error": _error_info(message),
            "duration": message.duration, "control": list(message.control) if message.control else None,
            "retryable": message.retryable,
        })
    if isinstance(message, RetryDue):
        return packb({"t": _RETRY, "node": message.node})
    return packb({"t": _RAW, "v": message})


def decode(data: bytes) -> Any:
    """The message in envelope `data`; `MalformedMessage` for anything else."""
    try:
        doc = unpackb(data)
    except Exception as exc:
        raise MalformedMessage(f"not a msgpack envelope ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("t") not in (_TASK, _REPLY, _RETRY, _RAW):
        raise MalformedMessage("not a graflow-async envelope")
    try:
        kind = doc["t"]
        if kind == _TASK:
            return TaskMessage(**{name: doc[name] for name in _TASK_FIELDS})
        if kind == _REPLY:
            control = doc["control"]
            return TaskReply(
                doc["run_id"], doc["node"], doc["attempt"], doc["ok"], doc["value"],
                _error_from(doc["error"]), doc["duration"], tuple(control) if control else None,
                doc["retryable"],
            )
        if kind == _RETRY:
            return RetryDue(doc["node"])
        return doc["v"]
    except (KeyError, TypeError) as exc:
        raise MalformedMessage(f"incomplete {doc.get('t')} envelope: {exc}") from None


def _error_info(reply: TaskReply) -> dict[str, Any] | None:
    exc = reply.error
    if exc is None:
        return None
    if isinstance(exc, RemoteTaskError):  # already remote: pass it on as it came
        return {"type": exc.type_name, "message": exc.remote_message, "traceback": exc.traceback,
                "task_id": exc.task_id}
    info: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "task_id": exc.task_id if isinstance(exc, TaskFailedError) else "",
    }
    if isinstance(exc, TaskTimeoutError):
        info["timeout"] = exc.timeout
    return info


def _error_from(info: dict[str, Any] | None) -> BaseException | None:
    if info is None:
        return None
    if "timeout" in info:
        return TaskTimeoutError(info["task_id"], info["timeout"])
    return RemoteTaskError(info.get("task_id", ""), info["type"], info["message"], info.get("traceback", ""))
