"""Errors a journal snapshot keeps (`plan.snapshot` with ``keep_running``), as documents
that come back as the same errors.

A plan holds errors as state: why the run failed, and why each failed member of a
parallel group failed (its policy reads them, and `ParallelGroupError` describes them).
A checkpoint keeps a member's error as its type name and message only; a snapshot the
run's journal is compacted into must give back the plan the journal's facts build, so it
keeps each error by what rebuilds it:

    {"type": "CycleLimitError", "args": ["loop", 4, 4, "loop"]}
    {"type": "ParallelGroupError", "args": ["fan", [["w2", {"type": ...}]], ["w1"], "..."]}
    {"type": "FeedbackValidationError", "args": ["..."], "state": {"field": "age"}}

`type` names an exception of `graflow_async.exceptions` or a builtin `Exception`, never
anything else; `args` are what its ``__reduce__`` gives (the constructor's arguments),
of plain values (None, booleans, numbers, strings, bytes, lists and tuples of them) and
errors (maps); `state`, when there is one, its public attributes set after
construction. Any other error (a user's own type, or one holding other values) is kept
as the `RemoteTaskError` it would come back as from a worker or a journal: its type
name and message.

Documents are read from files and Redis: `error_from_doc` checks every part and raises
`CheckpointError` naming the field, never builds a type it was not meant to.
"""

from __future__ import annotations

import builtins
from typing import Any

from graflow_async import exceptions
from graflow_async.exceptions import CheckpointError
from graflow_async.plan.doc_fields import MAX_MESSAGE, MAX_TEXT, invalid, listed, where

__all__ = ["error_doc", "error_from_doc"]

MAX_DEPTH = 32  # errors and lists nested in an error's arguments
_SCALARS = (type(None), bool, int, float, str, bytes)
_KEYS = frozenset(("type", "args", "state"))


class _Unkept(Exception):
    """An error, or a value in its arguments, that a document cannot rebuild."""


def error_doc(exc: BaseException, task_id: str = "") -> dict[str, Any]:
    """`exc` as a document `error_from_doc` rebuilds; `task_id` names the task an error
    kept by its type name and message is reported for."""
    try:
        return _doc(exc, task_id, 0)
    except _Unkept:
        return _remote(exc, task_id)


def _doc(exc: BaseException, task_id: str, depth: int) -> dict[str, Any]:
    cls = type(exc)
    if depth > MAX_DEPTH or _known(cls.__name__) is not cls:
        raise _Unkept
    try:
        reduced = exc.__reduce__()
    except Exception:
        raise _Unkept from None
    if not isinstance(reduced, tuple) or len(reduced) < 2 or reduced[0] is not cls or type(reduced[1]) is not tuple:
        raise _Unkept
    doc: dict[str, Any] = {"type": cls.__name__, "args": [_value(a, task_id, depth + 1) for a in reduced[1]]}
    state = reduced[2] if len(reduced) > 2 else None
    if state is not None and not isinstance(state, dict):
        raise _Unkept
    if state:  # its own attributes; private ones (__notes__, a cache) are not kept
        public = {k: _value(v, task_id, depth + 1) for k, v in state.items() if _is_attribute(k)}
        if public:
            doc["state"] = public
    return doc


def _value(value: Any, task_id: str, depth: int) -> Any:
    if type(value) in _SCALARS:
        if type(value) in (str, bytes) and len(value) > MAX_MESSAGE:
            raise _Unkept
        return value
    if isinstance(value, BaseException):
        try:
            return _doc(value, task_id, depth)
        except _Unkept:
            return _remote(value, task_id)
    if depth <= MAX_DEPTH and type(value) in (list, tuple):
        return type(value)(_value(v, task_id, depth + 1) for v in value)
    raise _Unkept


def _remote(exc: BaseException, task_id: str) -> dict[str, Any]:
    """`exc` as the `RemoteTaskError` a worker or a journal would give back for it."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ raises still has a type
        message = ""
    return {"type": "RemoteTaskError", "args": [task_id, type(exc).__name__[:MAX_TEXT], message[:MAX_MESSAGE], ""]}


def _known(name: Any) -> type[Exception] | None:
    """The exception `name` means: one of graflow-async's, or a builtin one (an
    `Exception`: never one that stops a process, as SystemExit does)."""
    if type(name) is not str:
        return None
    cls = getattr(exceptions, name, None) if name in exceptions.__all__ else getattr(builtins, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else None


def _is_attribute(name: Any) -> bool:
    return type(name) is str and name.isidentifier() and not name.startswith("_")


# --- reading -------------------------------------------------------------------------------------
def error_from_doc(doc: Any, path: str) -> BaseException:
    """The error `doc` (read from a file or Redis) describes; CheckpointError naming the
    part of it, under `path`, that is not well formed."""
    return _error(doc, path, 0)


def _error(doc: Any, path: str, depth: int) -> BaseException:
    if type(doc) is not dict or "type" not in doc or "args" not in doc or not _KEYS.issuperset(doc):
        raise invalid(path, "an error: a map of 'type', 'args' and maybe 'state'", doc)
    if depth > MAX_DEPTH:
        raise invalid(path, f"an error nested at most {MAX_DEPTH} deep", doc)
    cls = _known(doc["type"])
    if cls is None:
        raise invalid(f"{path}.type", "the name of a graflow-async or builtin exception", doc["type"])
    args = [_read(a, where(f"{path}.args", i), depth + 1) for i, a in enumerate(listed(doc["args"], f"{path}.args"))]
    state = doc.get("state") or {}
    if type(state) is not dict or not all(_is_attribute(k) for k in state):
        raise invalid(f"{path}.state", "a map of attribute names", state)
    values = {k: _read(v, where(f"{path}.state", k), depth + 1) for k, v in state.items()}
    try:
        exc = cls(*args)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint field '{path}' must be an error its type can rebuild: {doc['type']}{tuple(args)!r} "
            f"raised {type(e).__name__}"
        ) from None
    exc.__dict__.update(values)
    return exc


def _read(value: Any, path: str, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        if kind in (str, bytes) and len(value) > MAX_MESSAGE:
            raise invalid(path, f"at most {MAX_MESSAGE} characters", value)
        return value
    if kind is dict:
        return _error(value, path, depth)
    if kind in (list, tuple) and depth <= MAX_DEPTH:
        return kind(_read(v, where(path, i), depth + 1) for i, v in enumerate(value))
    raise invalid(path, "none, a boolean, a number, a string, bytes, a list, a tuple or an error", value)
