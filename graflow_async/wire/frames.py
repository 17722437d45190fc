"""The frames of a task's context relayed from another process (a container, a child
process) over a Unix socket: a 4-byte big-endian length and a msgpack body; requests
``{"id", "op", "args", "timeout"}``, answers a `ContextReply` in the wire envelope. The
other process is not trusted: every frame is bounded and every request checked."""

from __future__ import annotations

import asyncio
import math
import struct
from typing import Any

from graflow_async.wire.codec import unpackb
from graflow_async.wire.envelope import MAX_NESTING

MAX_FRAME = 16 << 20
_HEADER = struct.Struct(">I")


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's body, or None at the end of the stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is larger than the {MAX_FRAME} allowed")
    return await reader.readexactly(size)


def frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise ValueError(f"a frame of {len(body)} bytes is larger than the {MAX_FRAME} allowed")
    return _HEADER.pack(len(body)) + body


def request_from(body: bytes) -> tuple[str, str, dict[str, Any], float | None]:
    doc = unpackb(body, max_nesting=MAX_NESTING)
    if not isinstance(doc, dict) or set(doc) != {"id", "op", "args", "timeout"}:
        raise ValueError("a context request must be a map of id, op, args and timeout")
    request_id, op, args, timeout = doc["id"], doc["op"], doc["args"], doc["timeout"]
    if not isinstance(request_id, str) or not isinstance(op, str) or not isinstance(args, dict):
        raise ValueError("a context request's id and op must be strings and its args a map")
    if not all(isinstance(k, str) for k in args):
        raise ValueError("a context request's argument names must be strings")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0
    ):
        raise ValueError("a context request's timeout must be a positive number or nil")
    return request_id, op, args, timeout
