"""The raw answers of the stream commands, read into plain values and checked for shape.

An answer of a shape the command never gives raises `MalformedReply` (the layer then
drops that connection and asks again on a fresh one). RESP2 and RESP3 shapes are both
read: a redis-py client given to the transport may speak either.
"""

from __future__ import annotations

import re
from typing import Any

from graflow_async.logs import as_text
from graflow_async.transports.redis.errors import MalformedReply

Entry = tuple[bytes, dict[bytes, Any]]  # a stream entry: its id and its fields
_ENTRY_ID = re.compile(rb"\d{1,20}-\d{1,20}")


def is_entry_id(value: bytes) -> bool:
    """Whether `value` is a stream entry id (``<ms>-<seq>``)."""
    return _ENTRY_ID.fullmatch(value) is not None


def entry_id(answer: Any) -> bytes | None:
    """An XADD's answer: the new entry's id, or None (NOMKSTREAM on a stream that is gone)."""
    if answer is None:
        return None
    if isinstance(answer, str):
        answer = answer.encode()
    if not isinstance(answer, bytes) or _ENTRY_ID.fullmatch(answer) is None:
        raise MalformedReply(f"XADD answered {_shown(answer)}, not an entry id")
    return answer


def entries(answer: Any) -> list[Entry]:
    """The entries of an XRANGE or XCLAIM answer (an entry deleted while pending has no fields)."""
    if answer is None:
        return []
    if not isinstance(answer, list):
        raise MalformedReply(f"expected a list of stream entries, got {_shown(answer)}")
    return [_entry(item) for item in answer]


def streams(answer: Any) -> dict[bytes, list[Entry]]:
    """The entries of an XREAD or XREADGROUP answer, by stream name (None: nothing came)."""
    if answer is None:
        return {}
    if isinstance(answer, dict):
        pairs: Any = answer.items()
    elif isinstance(answer, list):
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in answer):
            raise MalformedReply("an XREAD answer whose items are not [stream, entries] pairs")
        pairs = answer
    else:
        raise MalformedReply(f"expected an XREAD answer, got {_shown(answer)}")
    out: dict[bytes, list[Entry]] = {}
    for name, found in pairs:
        if isinstance(name, str):
            name = name.encode()
        if not isinstance(name, bytes):
            raise MalformedReply(f"a stream name that is {_shown(name)}")
        out[name] = entries(found)
    return out


def pending_rows(answer: Any) -> list[tuple[bytes, bytes, int, int]]:
    """XPENDING's extended answer: (id, consumer, idle ms, deliveries) per pending entry."""
    if not isinstance(answer, list):
        raise MalformedReply(f"expected XPENDING rows, got {_shown(answer)}")
    rows = []
    for row in answer:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[2], int) and isinstance(row[3], int)):
            raise MalformedReply(f"an XPENDING row of an unknown shape: {_shown(row)}")
        rows.append((_bytes(row[0]), _bytes(row[1]), row[2], row[3]))
    return rows


def ids(answer: Any) -> list[bytes]:
    """A list of entry ids (XCLAIM ... JUSTID)."""
    if not isinstance(answer, list):
        raise MalformedReply(f"expected entry ids, got {_shown(answer)}")
    return [_bytes(i) for i in answer]


def info_maps(answer: Any) -> list[dict[str, Any]]:
    """XINFO GROUPS or XINFO CONSUMERS: one dict per group or consumer (keys as str)."""
    if not isinstance(answer, list):
        raise MalformedReply(f"expected XINFO rows, got {_shown(answer)}")
    out = []
    for row in answer:
        if isinstance(row, dict):
            out.append({as_text(k): v for k, v in row.items()})
        elif isinstance(row, list) and len(row) % 2 == 0:
            it = iter(row)
            out.append({as_text(k): v for k, v in zip(it, it, strict=True)})
        else:
            raise MalformedReply(f"an XINFO row of an unknown shape: {_shown(row)}")
    return out


def integer(answer: Any) -> int:
    if not isinstance(answer, int):
        raise MalformedReply(f"expected an integer, got {_shown(answer)}")
    return answer


def _entry(item: Any) -> Entry:
    if not (isinstance(item, list) and len(item) == 2):
        raise MalformedReply(f"a stream entry of an unknown shape: {_shown(item)}")
    ident, flat = item
    ident = _bytes(ident)
    if _ENTRY_ID.fullmatch(ident) is None:
        raise MalformedReply(f"a stream entry id that is {_shown(ident)}")
    if not flat:  # an entry deleted while pending reads as its id and nothing
        return ident, {}
    if isinstance(flat, dict):
        return ident, {_bytes(k): v for k, v in flat.items()}
    if not isinstance(flat, list) or len(flat) % 2:
        raise MalformedReply(f"the fields of entry {as_text(ident)} are {_shown(flat)}")
    it = iter(flat)
    return ident, {_bytes(k): v for k, v in zip(it, it, strict=True)}


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise MalformedReply(f"expected a string, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A short description of an unexpected value (never its whole, possibly huge, text)."""
    if isinstance(value, bytes | str):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, list | dict):
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__
