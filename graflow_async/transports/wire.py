"""The wire format of messages that leave the process: msgpack envelopes, never pickle.

A `TaskMessage` travels without its in-process task object: a worker finds the
function by ``task_ref`` and builds its own context. Exceptions cannot travel; their
type name, message and traceback do. A task's error comes back as `RemoteTaskError`
(a timeout as `TaskTimeoutError`); an error a run raised for a context request comes
back as the same graflow-async or builtin exception type when it is one the task
could catch by name, else as `GraflowError`. Directives travel as tagged lists, an
added component as its spec (see `plan.specs`). Anything else travels as a plain
msgpack value.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

from .. import exceptions as errors
from ..codec import packb, unpackb
from ..messages import (
    AddTasks,
    Cancel,
    ContextReply,
    ContextRequest,
    Iterate,
    RetryDue,
    TaskMessage,
    TaskReply,
    Terminate,
)

_TASK, _REPLY, _RETRY, _RAW, _REQUEST, _ANSWER = "task", "reply", "retry", "raw", "ctx", "ctx-reply"
_KINDS = (_TASK, _REPLY, _RETRY, _RAW, _REQUEST, _ANSWER)
_TASK_FIELDS = ("run_id", "task_id", "node", "attempt", "reply_to", "kwargs", "timeout", "task_ref",
                "lease_timeout", "max_deliveries", "inject_context", "cycle", "max_cycles", "resumed_metadata")
_REQUEST_FIELDS = ("run_id", "node", "cycle", "attempt", "request_id", "op", "args", "reply_to")
# Errors a context request may raise at the run that the task gets back as themselves.
_CONTEXT_ERRORS: dict[str, type[Exception]] = {
    **{name: getattr(errors, name) for name in (
        "GraflowError", "GraphError", "CheckpointError", "FeedbackError", "FeedbackTimeoutError",
        "FeedbackCancelledError", "FeedbackNotFoundError", "FeedbackAlreadyAnsweredError", "TransportError",
        "HandlerError",
    )},
    "TypeError": TypeError, "ValueError": ValueError, "KeyError": KeyError, "LookupError": LookupError,
}


class MalformedMessage(ValueError):
    """Bytes that are not a graflow-async envelope (garbage, a pickle, another tool's)."""


def encode(message: Any) -> bytes:
    """Envelope bytes for `message`; TypeError naming the value that cannot travel."""
    kind = type(message)
    if kind is TaskMessage:
        doc = {"t": _TASK, **{name: getattr(message, name) for name in _TASK_FIELDS}}
        try:
            return packb(doc)
        except TypeError as exc:
            raise TypeError(f"the arguments of task {message.task_id!r} cannot be sent: {exc}") from exc
    if kind is TaskReply:
        return _encode_reply(message)
    if kind is ContextRequest:
        return packb({"t": _REQUEST, **{name: getattr(message, name) for name in _REQUEST_FIELDS}})
    if kind is ContextReply:
        return packb({"t": _ANSWER, "request_id": message.request_id, "ok": message.ok, "value": message.value,
                      "error": _error_info(message.error)})
    if kind is RetryDue:
        return packb({"t": _RETRY, "node": message.node})
    return packb({"t": _RAW, "v": message})


def decode(data: bytes) -> Any:
    """The message in envelope `data`; `MalformedMessage` for anything else."""
    try:
        doc = unpackb(data)
    except Exception as exc:
        raise MalformedMessage(f"not a msgpack envelope ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("t") not in _KINDS:
        raise MalformedMessage("not a graflow-async envelope")
    try:
        return _decode(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MalformedMessage(f"malformed {doc.get('t')} envelope: {exc}") from None


def _encode_reply(reply: TaskReply) -> bytes:
    doc = {
        "t": _REPLY, "run_id": reply.run_id, "node": reply.node, "attempt": reply.attempt, "ok": reply.ok,
        "value": reply.value, "error": _error_info(reply.error), "duration": reply.duration,
        "directives": [_directive(d) for d in reply.directives], "retryable": reply.retryable,
        "suspended": reply.suspended, "cycle": reply.cycle, "task_id": reply.task_id,
    }
    try:
        return packb(doc)
    except (TypeError, ValueError, OverflowError) as exc:
        what = (f"returned a {type(reply.value).__name__}" if _unpackable(reply.value)
                else "asked its run for something (next_task, next_iteration) holding a value")
        raise TypeError(f"task {reply.task_id!r} {what} that cannot be serialized: {exc}") from exc


def _unpackable(value: Any) -> bool:
    try:
        packb(value)
    except (TypeError, ValueError, OverflowError):
        return True
    return False


def _decode(doc: dict[str, Any]) -> Any:
    kind = doc["t"]
    if kind == _TASK:
        message = TaskMessage(**{name: doc[name] for name in _TASK_FIELDS})
        for name in ("run_id", "task_id", "reply_to"):
            _check(getattr(message, name), str, name)
        for name in ("node", "attempt", "cycle", "max_cycles"):
            _check(getattr(message, name), int, name)
        _check(message.kwargs, dict, "kwargs")
        if not all(isinstance(k, str) for k in message.kwargs):
            raise TypeError("kwargs names must be strings")
        for name in ("timeout", "lease_timeout"):
            value = getattr(message, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value <= 0):
                raise TypeError(f"{name} must be a positive finite number, got {value!r}")
        if message.max_deliveries is not None:
            _check(message.max_deliveries, int, "max_deliveries")
        if message.task_ref is not None:
            _check(message.task_ref, str, "task_ref")
        if message.resumed_metadata is not None:
            _check(message.resumed_metadata, dict, "resumed_metadata")
        return message._replace(inject_context=bool(message.inject_context))
    if kind == _REPLY:
        task_id = doc.get("task_id", "")
        _check(task_id, str, "task_id")
        reply = TaskReply(
            doc["run_id"], doc["node"], doc["attempt"], bool(doc["ok"]), doc["value"],
            _error_from(doc["error"], task_id), float(doc["duration"]),
            tuple(_directive_from(d) for d in doc["directives"]), bool(doc["retryable"]), bool(doc["suspended"]),
            doc["cycle"], task_id,
        )
        for name in ("node", "attempt", "cycle"):
            _check(getattr(reply, name), int, name)
        return reply
    if kind == _REQUEST:
        request = ContextRequest(**{name: doc[name] for name in _REQUEST_FIELDS})
        for name in ("run_id", "request_id", "op", "reply_to"):
            _check(getattr(request, name), str, name)
        for name in ("node", "cycle", "attempt"):
            _check(getattr(request, name), int, name)
        _check(request.args, dict, "args")
        return request
    if kind == _ANSWER:
        _check(doc["request_id"], str, "request_id")
        return ContextReply(doc["request_id"], bool(doc["ok"]), doc["value"], _context_error_from(doc["error"]))
    if kind == _RETRY:
        return RetryDue(doc["node"])
    return doc["v"]


def _check(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")


# --- directives ---------------------------------------------------------------------------------------
def _directive(d: Any) -> list[Any]:
    if isinstance(d, AddTasks):
        component = d.component
        if not isinstance(component, dict):
            from ..plan.specs import component_spec

            component = component_spec(component)
        return ["add", component, d.goto]
    if isinstance(d, Iterate):
        return ["iterate", d.data]
    if isinstance(d, Cancel):
        return ["cancel", d.reason]
    if isinstance(d, Terminate):
        return ["terminate", d.reason]
    raise TypeError(f"not a directive: {d!r}")


def _directive_from(item: Any) -> Any:
    if not isinstance(item, list) or not item:
        raise TypeError("a directive must be a non-empty list")
    tag = item[0]
    if tag == "add" and len(item) == 3 and isinstance(item[1], dict):
        return AddTasks(item[1], bool(item[2]))
    if tag == "iterate" and len(item) == 2:
        return Iterate(item[1])
    if tag in ("cancel", "terminate") and len(item) == 2 and isinstance(item[1], str):
        return Cancel(item[1]) if tag == "cancel" else Terminate(item[1])
    raise TypeError(f"unknown directive {tag!r}")


# --- errors -----------------------------------------------------------------------------------------------
def _error_info(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    if isinstance(exc, errors.RemoteTaskError):  # already remote: pass it on as it came
        return {"type": exc.type_name, "message": exc.remote_message, "traceback": exc.traceback,
                "task_id": exc.task_id}
    info: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "task_id": exc.task_id if isinstance(exc, errors.TaskFailedError) else "",
    }
    if isinstance(exc, errors.TaskTimeoutError):
        info["timeout"] = exc.timeout
    if isinstance(exc, errors.FeedbackValidationError):
        info["field"] = exc.field
    return info


def _error_from(info: dict[str, Any] | None, task_id: str = "") -> BaseException | None:
    """The error a reply carries, named after its task (`task_id` when the info has none)."""
    if info is None:
        return None
    named = str(info.get("task_id") or task_id)
    if "timeout" in info:
        return errors.TaskTimeoutError(named, float(info["timeout"]))
    return errors.RemoteTaskError(named, str(info["type"]), str(info["message"]), str(info.get("traceback", "")))


def _context_error_from(info: dict[str, Any] | None) -> BaseException | None:
    if info is None:
        return None
    name, message = str(info["type"]), str(info["message"])
    if name == "FeedbackValidationError":
        return errors.FeedbackValidationError(message, field=info.get("field"))
    kind = _CONTEXT_ERRORS.get(name)
    if kind is not None:
        return kind(message)
    return errors.GraflowError(f"{name}: {message}")
