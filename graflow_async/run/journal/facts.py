"""A run's facts (`plan.facts`) as the bytes its journal keeps, and the writer that
journals each turn of a recording run.

    Succeeded  ["ok", node, cycle, attempt, value, duration, [directive, ...]]
    Failed     ["fail", node, cycle, attempt, error info, duration, retryable]
    Suspended  ["susp", node, cycle, attempt]
    RetryCame  ["retry", node]
    RetryAt    ["due", node, wall time]
    Wrote      ["w", op, key, value, node, cycle, attempt]   (the attempt that wrote)
    Stepped    ["step"]

Values travel as task results do (`wire.codec`); an added task by its import path
(found again when the facts are read: `run.replies.resolved`); an error as its type,
message and traceback. Nothing read back is trusted: a record that is not a fact is a
`JournalCorrupt` naming the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from graflow_async.plan.facts import STEPPED, Failed, RetryAt, RetryCame, Stepped, Succeeded, Suspended, Wrote
from graflow_async.run.journal.base import Journal
from graflow_async.run.journal.frames import JournalCorrupt
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.envelope import MAX_NESTING, directive_doc, directive_from
from graflow_async.wire.errors import error_from, error_info

WRITES = ("set", "delete", "append", "incr")


PLAIN = frozenset({int, float, str, bool, type(None), bytes})  # values msgpack carries as they are
plain_pack = msgpack.Packer(use_bin_type=True, strict_types=True).pack  # of values of PLAIN types


def encode_plain_result(node: int, cycle: int, attempt: int, value: Any, duration: float) -> bytes:
    """`encode` of a `Succeeded` without directives whose value's type is in `PLAIN`
    (most results: packed at once)."""
    try:
        return plain_pack(["ok", node, cycle, attempt, value, duration, []])
    except (ValueError, OverflowError) as exc:  # an int msgpack cannot carry
        raise TypeError(str(exc) or type(exc).__name__) from exc


def encode(fact: Any) -> bytes:
    """The bytes of `fact`; TypeError naming what cannot be kept (a result msgpack cannot carry)."""
    kind = type(fact)
    if kind is Succeeded and not fact.directives and type(fact.value) in PLAIN:
        return encode_plain_result(fact.node, fact.cycle, fact.attempt, fact.value, fact.duration)
    if kind is Succeeded:
        doc: list[Any] = ["ok", fact.node, fact.cycle, fact.attempt, fact.value, fact.duration]
        doc.append([directive_doc(d) for d in fact.directives])
    elif kind is Failed:
        doc = ["fail", fact.node, fact.cycle, fact.attempt, error_info(fact.error), fact.duration, fact.retryable]
    elif kind is Suspended:
        doc = ["susp", fact.node, fact.cycle, fact.attempt]
    elif kind is RetryCame:
        doc = ["retry", fact.node]
    elif kind is RetryAt:
        doc = ["due", fact.node, fact.at]
    elif kind is Wrote:
        doc = ["w", fact.op, fact.key, fact.value]
        if fact.by is not None:
            doc += list(fact.by)
    elif kind is Stepped:
        doc = ["step"]
    else:
        raise TypeError(f"not a run fact: {kind.__name__}")
    try:
        return packb(doc, max_nesting=MAX_NESTING)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise TypeError(str(exc) or type(exc).__name__) from exc


def decode(data: bytes, run_id: str) -> Any:
    """The fact in `data` (an added task still named by its import path)."""
    try:
        doc = unpackb(data, max_nesting=MAX_NESTING)
        return _fact(doc)
    except (LookupError, TypeError, ValueError) as exc:
        raise JournalCorrupt(run_id, f"journal of run {run_id}: a record that is not a fact ({exc})") from None


def _fact(doc: Any) -> Any:
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], str):
        raise TypeError("not a tagged list")
    tag, rest = doc[0], doc[1:]
    if tag == "step" and not rest:
        return STEPPED
    if tag == "retry" and len(rest) == 1:
        return RetryCame(_count(rest[0], 0))
    if tag == "due" and len(rest) == 2:
        return RetryAt(_count(rest[0], 0), _seconds(rest[1]))
    if tag == "susp" and len(rest) == 3:
        return Suspended(_count(rest[0], 0), _count(rest[1], 1), _count(rest[2], 1))
    if tag == "ok" and len(rest) == 6 and isinstance(rest[5], list):
        node, cycle, attempt = _count(rest[0], 0), _count(rest[1], 1), _count(rest[2], 1)
        directives = tuple(directive_from(d) for d in rest[5])
        return Succeeded(node, cycle, attempt, rest[3], _seconds(rest[4]), directives)
    if tag == "fail" and len(rest) == 6:
        node, cycle, attempt = _count(rest[0], 0), _count(rest[1], 1), _count(rest[2], 1)
        return Failed(node, cycle, attempt, error_from(rest[3]), _seconds(rest[4]), bool(rest[5]))
    if tag == "w" and len(rest) in (3, 6) and rest[0] in WRITES and isinstance(rest[1], str):
        by = (_count(rest[3], 0), _count(rest[4], 1), _count(rest[5], 1)) if len(rest) == 6 else None
        return Wrote(rest[0], rest[1], rest[2], by)
    raise ValueError(f"unknown fact {tag!r}")


def _count(value: Any, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ValueError(f"expected a whole number >= {minimum}, got {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"expected a duration, got {value!r}")
    return float(value)


class JournalWriter:
    """Journals each turn of a recording run (a `run.recording.FactWriter`): one append of
    the turn's facts, fenced by the owner's `epoch`, before the run acts on them."""

    def __init__(self, journal: Journal, epoch: int, next_seq: int = 0) -> None:
        self.journal = journal
        self.epoch = epoch
        self.next_seq = next_seq

    async def write(self, records: list[bytes], sends: list[Any], consumed: bytes | None = None) -> list[Any]:
        self.next_seq = await self.journal.append(self.epoch, records)
        return sends

    async def compact(self, snapshot: bytes, upto: int) -> None:
        await self.journal.compact(self.epoch, snapshot, upto)

    write_now: Callable[[list[bytes]], int] | None = None  # this journal's appends are awaited


def read_facts(records: list[bytes], run_id: str) -> list[Any]:
    """The facts of journal `records`, added tasks found here (as a worker's reply's are)."""
    from graflow_async.run.replies import resolved

    out = []
    for data in records:
        fact = decode(data, run_id)
        if type(fact) is Succeeded and fact.directives:
            fact = fact._replace(directives=resolved(fact.directives))
        out.append(fact)
    return out
