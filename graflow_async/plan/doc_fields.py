"""Checking a checkpoint document field by field, before any of it is used.

The envelope (magic, version, checksum, signature) says a file is whole, not that its
document makes sense: a document edited by hand, written by another tool or forged
and re-sealed passes it. Every field is checked here, with pure functions (no I/O):
its type, its range and the size of what it holds. A bad field raises
`CheckpointError` naming it, e.g. ``checkpoint field 'plan.runs[3]' must be ...,
got 'x'``. `TOP_FIELDS` covers the document's own fields; what refers to the graph
(node numbers, task ids) is checked against it by `state_fields` when the document is
restored into a run.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from graflow_async.exceptions import CheckpointError
from graflow_async.options import run_id as check_run_id

__all__ = [
    "MAX_COUNT",
    "MAX_MESSAGE",
    "MAX_TEXT",
    "TOP_FIELDS",
    "all_texts",
    "check_fields",
    "count",
    "each",
    "flag",
    "invalid",
    "is_text",
    "keyed",
    "listed",
    "number",
    "pair",
    "show",
    "text",
    "texts",
    "where",
]

MAX_TEXT = 4096  # characters of an id, a name, an import path or an error's type name
MAX_COUNT = 2**31 - 1  # attempts, sequence numbers: far beyond anything a run reaches
MAX_MESSAGE = 1 << 20  # characters of a recorded error message
_SHOW = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxtuple, _SHOW.maxdict = 2, 4, 4, 4
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlong = 60, 60, 40

Check = Callable[[Any, str], Any]


def show(value: Any) -> str:
    """`value`, shortened for an error message."""
    return _SHOW.repr(value)


def invalid(path: str, expected: str, value: Any) -> CheckpointError:
    return CheckpointError(f"checkpoint field '{path}' must be {expected}, got {show(value)}")


def where(path: str, key: Any) -> str:
    """The path of item `key` (an index, or a map's string key) of the field at `path`."""
    if isinstance(key, str):
        return f'{path}["{key if len(key) <= 60 else key[:57] + "..."}"]'
    return f"{path}[{key}]"


# --- values --------------------------------------------------------------------------------
# Each check returns the value, or raises naming `path`. Lists are checked item by item
# with a cheap test first (`each`): the path of an item is only spelled out for the
# item that fails, so a checkpoint of a million nodes is checked in a fraction of a second.
def text(value: Any, path: str, *, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise invalid(path, f"a non-empty string of at most {limit} characters", value)
    return value


def is_text(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_TEXT


def count(value: Any, path: str, *, low: int = 0, high: int = MAX_COUNT, what: str = "") -> int:
    """An int (not a bool) from `low` to `high`; `what` says what it counts, for the message."""
    if type(value) is not int or not low <= value <= high:
        kind = "a non-negative int" if low == 0 else f"an int of at least {low}"
        raise invalid(path, f"{kind}{what} (at most {high})", value)
    return value


def number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise invalid(path, "a finite, non-negative number", value)
    return float(value)


def flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(path, "true or false", value)
    return value


def listed(value: Any, path: str, *, length: int | None = None, limit: int | None = None, why: str = "") -> list[Any]:
    """A list; of exactly `length` items, or of at most `limit` (`why` says where the
    number comes from)."""
    if not isinstance(value, list):
        raise invalid(path, "a list", value)
    if length is not None and len(value) != length:
        raise CheckpointError(f"checkpoint field '{path}' must hold {length} items{why}, got {len(value)}")
    if limit is not None and len(value) > limit:
        raise CheckpointError(f"checkpoint field '{path}' must hold at most {limit} items{why}, got {len(value)}")
    return value


def pair(value: Any, path: str) -> list[Any]:
    return listed(value, path, length=2)


def each(items: Iterable[Any], path: str, ok: Callable[[Any], bool], explain: Check) -> None:
    """Every item passes the cheap test `ok`; the first that does not is explained by
    ``explain(item, its path)``, which raises."""
    for i, item in enumerate(items):
        if not ok(item):
            explain(item, where(path, i))
            raise invalid(where(path, i), "well formed", item)  # `explain` found nothing to say


def mapping(value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise invalid(path, "a map", value)
    return value


def keyed(value: Any, path: str) -> dict[str, Any]:
    """A map whose keys are strings (ids, channel keys); its values are the user's."""
    if mapping(value, path) and set(map(type, value)) != {str}:
        key = next(k for k in value if type(k) is not str)
        raise CheckpointError(f"checkpoint field '{path}' must have string keys, got the key {show(key)}")
    return value


def optional(check: Check) -> Check:
    def checked(value: Any, path: str) -> Any:
        return None if value is None else check(value, path)

    return checked


# --- the document's own fields -------------------------------------------------------------
def _run_id(value: Any, path: str) -> str:
    try:
        return check_run_id(value)
    except ValueError:
        raise invalid(
            path, "a run id (1-200 visible characters without spaces or '/', not '.' or '..')", value
        ) from None


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise invalid(path, f"a string of at most {MAX_TEXT} characters", value)
    return value


def _ref(value: Any, path: str) -> str:
    module, _, attr = text(value, path).partition(":")
    if not module or not attr:
        raise invalid(path, "an import path 'module:attr'", value)
    return value


def texts(value: Any, path: str) -> list[str]:
    items = listed(value, path)
    if not all_texts(items):
        each(items, path, is_text, text)
    return value


def all_texts(items: list[Any]) -> bool:
    """Whether every item is a text, tested without a Python call per item."""
    return not items or (
        set(map(type, items)) == {str} and min(map(len, items)) > 0 and max(map(len, items)) <= MAX_TEXT
    )


def _is_edge(value: Any) -> bool:
    return type(value) is list and len(value) == 2 and is_text(value[0]) and is_text(value[1])


def _edge(value: Any, path: str) -> list[str]:
    return texts(pair(value, path), path)


def _edges(value: Any, path: str) -> None:
    edges = listed(value, path)
    if (
        edges
        and set(map(type, edges)) == {list}
        and set(map(len, edges)) == {2}
        and all_texts(list(chain.from_iterable(edges)))
    ):
        return
    each(edges, path, _is_edge, _edge)


def _attempts(value: Any, path: str) -> dict[str, int]:
    counts = list(keyed(value, path).values())
    if counts and not (set(map(type, counts)) == {int} and min(counts) >= 1 and max(counts) <= MAX_COUNT):
        for key, n in value.items():
            count(n, where(path, key), low=1)
    return value


def _graph(value: Any, path: str) -> dict[str, Any]:
    """The graph's shape by ids, kept to explain a mismatch: tasks, edges, groups."""
    for name in ("tasks", "edges", "groups"):
        if name not in mapping(value, path):
            raise CheckpointError(f"checkpoint field '{path}.{name}' is missing")
    texts(value["tasks"], f"{path}.tasks")
    _edges(value["edges"], f"{path}.edges")
    for group, members in keyed(value["groups"], f"{path}.groups").items():
        texts(members, where(f"{path}.groups", group))
    return value


#: field -> (required, check). "plan" is only checked to be a map here: its fields
#: refer to the graph's nodes and are checked against it (`state_fields`).
TOP_FIELDS: dict[str, tuple[bool, Check]] = {
    "run_id": (True, _run_id),
    "fingerprint": (True, text),
    "graph": (True, _graph),
    "results": (True, keyed),
    "completed": (True, texts),
    "workflow": (False, _name),
    "workflow_ref": (False, optional(_ref)),
    "created_at": (False, number),
    "sequence": (False, count),
    "task_id": (False, optional(text)),
    "metadata": (False, mapping),  # the user's: any msgpack map
    "channel": (False, keyed),
    "pending": (False, texts),
    "groups_done": (False, texts),
    "attempts": (False, _attempts),
    "plan": (False, optional(mapping)),
}


def check_fields(doc: dict[str, Any]) -> None:
    """CheckpointError naming the first field of `doc` that is missing or malformed.
    Fields not listed are ignored (descriptive fields a later release may add)."""
    for name, (required, check) in TOP_FIELDS.items():
        if name in doc:
            check(doc[name], name)
        elif required:
            raise CheckpointError(f"checkpoint field '{name}' is missing")
