"""Exceptions on the wire: they cannot travel, their type name, message and traceback do.
A task's error comes back as `RemoteTaskError` (a timeout as `TaskTimeoutError`); an
error a run raised for a context request comes back as the same graflow-async or builtin
type when the task could catch it by name, else as `GraflowError`."""

from __future__ import annotations

import contextlib
import traceback
from typing import Any

from graflow_async import exceptions as errors
from graflow_async.logs import as_text
from graflow_async.wire.fields import check, positive

# Errors a context request may raise at the run that the task gets back as themselves.
_CONTEXT_ERRORS: dict[str, type[Exception]] = {
    **{
        name: getattr(errors, name)
        for name in (
            "GraflowError",
            "GraphError",
            "CheckpointError",
            "FeedbackError",
            "FeedbackTimeoutError",
            "FeedbackCancelledError",
            "FeedbackNotFoundError",
            "FeedbackAlreadyAnsweredError",
            "TransportError",
            "HandlerError",
        )
    },
    "TypeError": TypeError,
    "ValueError": ValueError,
    "KeyError": KeyError,
    "LookupError": LookupError,
}


def error_info(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    # Whatever a task put in an exception, the info holds what decode accepts: texts, a
    # positive finite timeout, a text or None field.
    if isinstance(exc, errors.RemoteTaskError):  # already remote: pass it on as it came
        return {
            "type": as_text(exc.type_name),
            "message": as_text(exc.remote_message),
            "traceback": as_text(exc.traceback),
            "task_id": as_text(exc.task_id),
        }
    info: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": as_text(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "task_id": as_text(exc.task_id) if isinstance(exc, errors.TaskFailedError) else "",
    }
    if isinstance(exc, errors.TaskTimeoutError):
        with contextlib.suppress(TypeError, ValueError):  # else it comes back as a RemoteTaskError
            info["timeout"] = positive(exc.timeout, "timeout")
    if isinstance(exc, errors.FeedbackValidationError):
        info["field"] = None if exc.field is None else as_text(exc.field)
    return info


def error_from(info: Any, task_id: str = "") -> BaseException | None:
    """The error a reply carries, named after its task (`task_id` when the info has none)."""
    if info is None:
        return None
    check(info, dict, "error")
    named = info.get("task_id") or task_id
    check(named, str, "error task_id")
    if "timeout" in info:
        return errors.TaskTimeoutError(named, positive(info["timeout"], "error timeout"))
    kind, message, trace = info["type"], info["message"], info.get("traceback", "")
    for value, name in ((kind, "type"), (message, "message"), (trace, "traceback")):
        check(value, str, f"error {name}")
    return errors.RemoteTaskError(named, kind, message, trace)


def context_error_from(info: Any) -> BaseException | None:
    if info is None:
        return None
    check(info, dict, "error")
    name, message, field = info["type"], info["message"], info.get("field")
    check(name, str, "error type")
    check(message, str, "error message")
    if name == "FeedbackValidationError":
        if field is not None:
            check(field, str, "error field")
        return errors.FeedbackValidationError(message, field=field)
    kind = _CONTEXT_ERRORS.get(name)
    if kind is not None:
        return kind(message)
    return errors.GraflowError(f"{name}: {message}")
