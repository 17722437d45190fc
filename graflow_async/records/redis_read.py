"""Reading the stores' Redis keys without trusting them: in one script, each key's type
and size are looked at before its value is read, so a key holding another type, or a
value larger than its bound, is reported as such instead of failing the whole read or
filling this process's memory.

`LUA_READ` is the Lua function `read(key, most, want, fields)` other scripts use too;
`read` reads a batch of keys with it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graflow_async.logs import as_text
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import MalformedReply
from graflow_async.transports.redis.scripts import Script

#: read(key, most, want, fields): {0} missing; {1, values...} found (a string's value, or a
#: hash's fields in order, false for a missing one); {2, type} another type; {3, bytes} larger
#: than `most` bytes (a hash: its fields together).
LUA_READ = """
local function read(key, most, want, fields)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return {0} end
  if kind ~= want then return {2, kind} end
  if want == 'string' then
    local size = redis.call('STRLEN', key)
    if size > most then return {3, size} end
    return {1, redis.call('GET', key)}
  end
  local size = 0
  for _, field in ipairs(fields) do size = size + redis.call('HSTRLEN', key, field) end
  if size > most then return {3, size} end
  local row = redis.call('HMGET', key, unpack(fields))
  table.insert(row, 1, 1)
  return row
end
"""
# KEYS: the keys to read. ARGV: the bound in bytes, the type ('string' or 'hash'), then a hash's fields.
_READ = Script(
    LUA_READ
    + """
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local out = {}
for i, key in ipairs(KEYS) do out[i] = read(key, tonumber(ARGV[1]), ARGV[2], fields) end
return out
"""
)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A key that cannot be read as a record: why (never what it holds)."""

    reason: str


#: what `read` finds at a key: None (no key), its values (a string's, or a hash's fields), or why not
Found = tuple[bytes | None, ...] | Unreadable | None


async def read(
    conn: RedisConnection, keys: Sequence[str], *, most: int, kind: str = "string", fields: Sequence[str] = ()
) -> list[Found]:
    """What each of `keys` holds: a string (`kind` "string") or the `fields` of a hash."""
    if not keys:
        return []
    parse = functools.partial(rows, len(keys), 1 if kind == "string" else len(fields))
    found: list[Found] = await _READ(conn, keys, [most, kind, *fields], parse=parse)
    return found


def rows(count: int, width: int, answer: Any) -> list[Found]:
    """The answer of `read` for `count` keys of `width` values each; `MalformedReply` for
    an answer the script never gives."""
    if not isinstance(answer, list) or len(answer) != count:
        raise MalformedReply("a read of store keys answered with something else than one row per key")
    return [row(item, width) for item in answer]


def row(item: Any, width: int) -> Found:
    """One key's row of `LUA_READ` (see there)."""
    if not isinstance(item, list) or not item or not isinstance(item[0], int):
        raise MalformedReply("a read of a store key answered with something else than a row")
    state, rest = item[0], item[1:]
    if state == 0 and not rest:
        return None
    if state == 1 and len(rest) == width and all(v is None or isinstance(v, bytes | str) for v in rest):
        return tuple(v.encode() if isinstance(v, str) else v for v in rest)
    if state == 2 and len(rest) == 1:
        return Unreadable(f"the key holds a {as_text(rest[0])[:20]}, not a record")
    if state == 3 and len(rest) == 1 and isinstance(rest[0], int):
        return Unreadable(f"larger than allowed ({rest[0]} bytes)")
    raise MalformedReply("a read of a store key answered with a row of an unknown shape")
