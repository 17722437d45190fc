"""The wire format of messages that leave the process: msgpack envelopes, never pickle.

A `TaskMessage` travels without its in-process task object: a worker finds the
function by ``task_ref`` and builds its own context. Exceptions cannot travel; their
type name, message and traceback do. A task's error comes back as `RemoteTaskError`
(a timeout as `TaskTimeoutError`); an error a run raised for a context request comes
back as the same graflow-async or builtin exception type when it is one the task
could catch by name, else as `GraflowError`. Directives travel as tagged lists, an
added component as its spec (see `plan.specs`). Anything else travels as a plain
msgpack value.

`decode` is total: whatever the bytes (any field of any type or size), it returns a
message whose fields have their declared types or raises `MalformedMessage`. It
accepts what `encode` produces and nothing `encode` refuses: tuples, sets and
frozensets nested more than `MAX_NESTING` deep inside each other cannot travel (the
codec decodes each with a nested unpack whose C stack frame is large; a few hundred
inside each other would overflow the stack and kill the process).
"""

from __future__ import annotations

import math
from typing import Any

from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.errors import context_error_from, error_from, error_info
from graflow_async.wire.fields import check, duration, names, positive, whole
from graflow_async.wire.messages import ContextReply, ContextRequest, RetryDue, TaskMessage, TaskReply

_TASK, _REPLY, _RETRY, _RAW, _REQUEST, _ANSWER = "task", "reply", "retry", "raw", "ctx", "ctx-reply"
_KINDS = (_TASK, _REPLY, _RETRY, _RAW, _REQUEST, _ANSWER)
_TASK_FIELDS = (
    "run_id",
    "task_id",
    "node",
    "attempt",
    "reply_to",
    "kwargs",
    "timeout",
    "task_ref",
    "lease_timeout",
    "max_deliveries",
    "inject_context",
    "cycle",
    "max_cycles",
    "resumed_metadata",
    "epoch",
)
_REQUEST_FIELDS = ("run_id", "node", "cycle", "attempt", "request_id", "op", "args", "reply_to", "epoch")
MAX_NESTING = 8  # tuples, sets and frozensets inside each other
MAX_CARRIER_ITEMS, MAX_CARRIER_TEXT = 8, 512  # a trace carrier a message may hold, from workers we do not trust


class MalformedMessage(ValueError):
    """Bytes that are not a graflow-async envelope (garbage, a pickle, another tool's)."""


def encode(message: Any) -> bytes:
    """Envelope bytes for `message`; TypeError naming the value that cannot travel."""
    kind = type(message)
    if kind is TaskMessage:
        doc = {"t": _TASK, **{name: getattr(message, name) for name in _TASK_FIELDS}}
        if message.trace is not None:
            doc["trace"] = message.trace
        if message.priority != 5:
            doc["priority"] = message.priority
        try:
            return _pack(doc)
        except TypeError as exc:
            raise TypeError(f"the arguments of task {message.task_id!r} cannot be sent: {exc}") from exc
    if kind is TaskReply:
        return _encode_reply(message)
    if kind is ContextRequest:
        return _pack({"t": _REQUEST, **{name: getattr(message, name) for name in _REQUEST_FIELDS}})
    if kind is ContextReply:
        return _pack(
            {
                "t": _ANSWER,
                "request_id": message.request_id,
                "ok": message.ok,
                "value": message.value,
                "error": error_info(message.error),
            }
        )
    if kind is RetryDue:
        return _pack({"t": _RETRY, "node": message.node})
    return _pack({"t": _RAW, "v": message})


def decode(data: bytes) -> Any:
    """The message in envelope `data`; `MalformedMessage` for anything else."""
    try:
        doc = unpackb(data, max_nesting=MAX_NESTING)
    except Exception as exc:
        raise MalformedMessage(f"not a msgpack envelope ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("t") not in _KINDS:
        raise MalformedMessage("not a graflow-async envelope")
    try:
        return _decode(doc)
    except (LookupError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedMessage(f"malformed {doc['t']} envelope: {exc}") from None


def _pack(value: Any) -> bytes:
    """`packb(value)`, refusing what `decode` would refuse; TypeError for what cannot travel."""
    try:
        data = packb(value, max_nesting=MAX_NESTING)
    except (ValueError, OverflowError, RecursionError) as exc:  # too deep for msgpack, or for decode
        raise TypeError(str(exc) or type(exc).__name__) from exc
    return data


def _encode_reply(reply: TaskReply) -> bytes:
    doc = {
        "t": _REPLY,
        "run_id": reply.run_id,
        "node": reply.node,
        "attempt": reply.attempt,
        "ok": reply.ok,
        "value": reply.value,
        "error": error_info(reply.error),
        "duration": reply.duration,
        "directives": [directive_doc(d) for d in reply.directives],
        "retryable": reply.retryable,
        "suspended": reply.suspended,
        "cycle": reply.cycle,
        "task_id": reply.task_id,
        "epoch": reply.epoch,
    }
    try:
        return _pack(doc)
    except TypeError as exc:
        what = (
            f"returned a {type(reply.value).__name__}"
            if _unpackable(reply.value)
            else "asked its run for something (next_task, next_iteration) holding a value"
        )
        raise TypeError(f"task {reply.task_id!r} {what} that cannot be serialized: {exc}") from exc


def _unpackable(value: Any) -> bool:
    try:
        _pack(value)
    except TypeError:
        return True
    return False


# --- decoding, checking every field -----------------------------------------------------------------
def _decode(doc: dict[str, Any]) -> Any:
    kind = doc["t"]
    if kind == _TASK:
        return _task_from(doc)
    if kind == _REPLY:
        return _reply_from(doc)
    if kind == _REQUEST:
        return _request_from(doc)
    if kind == _ANSWER:
        check(doc["request_id"], str, "request_id")
        return ContextReply(doc["request_id"], bool(doc["ok"]), doc["value"], context_error_from(doc["error"]))
    if kind == _RETRY:
        return RetryDue(whole(doc["node"], "node", 0))
    return doc["v"]


def _task_from(doc: dict[str, Any]) -> TaskMessage:
    g = doc.__getitem__  # positional, in TaskMessage's field order: this runs once per task
    message = TaskMessage(
        g("run_id"),
        g("task_id"),
        g("node"),
        g("attempt"),
        g("reply_to"),
        g("kwargs"),
        g("timeout"),
        g("task_ref"),
        None,
        g("lease_timeout"),
        g("max_deliveries"),
        g("inject_context"),
        g("cycle"),
        g("max_cycles"),
        g("resumed_metadata"),
        valid_carrier(doc.get("trace")),
        doc.get("epoch", 0),
        doc.get("priority", 5),
    )
    (
        run_id,
        task_id,
        node,
        attempt,
        reply_to,
        kwargs,
        timeout,
        task_ref,
        _,
        lease,
        deliveries,
        _,
        cycle,
        max_cycles,
        metadata,
        _,
        epoch,
        priority,
    ) = message
    if type(run_id) is not str or type(task_id) is not str or type(reply_to) is not str:  # the common case, fast
        for name in ("run_id", "task_id", "reply_to"):
            check(getattr(message, name), str, name)
    if (
        type(node) is not int
        or node < 0
        or type(attempt) is not int
        or attempt < 1
        or type(cycle) is not int
        or cycle < 1
        or type(max_cycles) is not int
        or max_cycles < 1
    ):
        whole(node, "node", 0)
        for name in ("attempt", "cycle", "max_cycles"):
            whole(getattr(message, name), name, 1)
    names(kwargs, "kwargs")
    for name, value in (("timeout", timeout), ("lease_timeout", lease)):  # seconds
        if value is not None:
            positive(value, name)
    if type(epoch) is not int or epoch < 0:
        whole(epoch, "epoch", 0)
    if type(priority) is not int or not 0 <= priority <= 9:
        raise ValueError(f"priority must be a whole number 0-9, got {priority!r}")
    if deliveries is not None:
        whole(deliveries, "max_deliveries", 1)
    if task_ref is not None:
        check(task_ref, str, "task_ref")
    if metadata is not None:
        check(metadata, dict, "resumed_metadata")
    return (
        message
        if message.inject_context is False or message.inject_context is True
        else message._replace(inject_context=bool(message.inject_context))
    )


def _reply_from(doc: dict[str, Any]) -> TaskReply:
    run_id, node, attempt, cycle, seconds = doc["run_id"], doc["node"], doc["attempt"], doc["cycle"], doc["duration"]
    task_id, directives, epoch = doc.get("task_id", ""), doc["directives"], doc.get("epoch", 0)
    if (
        type(run_id) is str
        and type(task_id) is str
        and type(node) is int
        and node >= 0
        and type(attempt) is int
        and attempt >= 1
        and type(cycle) is int
        and cycle >= 1
        and type(seconds) is float
        and 0.0 <= seconds < math.inf
        and doc["error"] is None
        and type(directives) is list
        and not directives
        and type(epoch) is int
        and epoch >= 0
    ):
        # the common case (a plain success or failure without error info), checked fast
        return TaskReply(
            run_id,
            node,
            attempt,
            bool(doc["ok"]),
            doc["value"],
            None,
            seconds,
            (),
            bool(doc["retryable"]),
            bool(doc["suspended"]),
            cycle,
            task_id,
            epoch,
        )
    check(task_id, str, "task_id")
    check(doc["run_id"], str, "run_id")
    check(doc["directives"], list, "directives")
    return TaskReply(
        doc["run_id"],
        whole(doc["node"], "node", 0),
        whole(doc["attempt"], "attempt", 1),
        bool(doc["ok"]),
        doc["value"],
        error_from(doc["error"], task_id),
        duration(doc["duration"]),
        tuple(directive_from(d) for d in doc["directives"]),
        bool(doc["retryable"]),
        bool(doc["suspended"]),
        whole(doc["cycle"], "cycle", 1),
        task_id,
        whole(epoch, "epoch", 0),
    )


def _request_from(doc: dict[str, Any]) -> ContextRequest:
    request = ContextRequest(**{name: doc[name] for name in _REQUEST_FIELDS[:-1]}, epoch=doc.get("epoch", 0))
    for name in ("run_id", "request_id", "op", "reply_to"):
        check(getattr(request, name), str, name)
    whole(request.node, "node", 0)
    whole(request.epoch, "epoch", 0)
    for name in ("cycle", "attempt"):
        whole(getattr(request, name), name, 1)
    names(request.args, "args")
    return request


# --- directives ---------------------------------------------------------------------------------------
def directive_doc(d: Any) -> list[Any]:
    """A directive as it travels (an added task by its import path)."""
    if isinstance(d, AddTasks):
        component = d.component
        if not isinstance(component, dict):
            from graflow_async.plan.specs import component_spec

            component = component_spec(component)
        return ["add", component, d.goto]
    if isinstance(d, Iterate):
        return ["iterate", d.data]
    if isinstance(d, Cancel):
        return ["cancel", d.reason]
    if isinstance(d, Terminate):
        return ["terminate", d.reason]
    raise TypeError(f"not a directive: {d!r}")


def directive_from(item: Any) -> Any:
    """A directive from what `directive_doc` made (TypeError for anything else)."""
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


def valid_carrier(value: Any) -> dict[str, str] | None:
    """`value` if it is a small map of short texts (a message's carrier), else None."""
    if not isinstance(value, dict) or len(value) > MAX_CARRIER_ITEMS:
        return None
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > MAX_CARRIER_TEXT or len(v) > MAX_CARRIER_TEXT:
            return None
    return value
