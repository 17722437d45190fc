"""Small helpers of the Redis Streams transport: entries, ids, descriptions."""

from __future__ import annotations

import functools
from typing import Any

from .wire import MalformedMessage, decode, encode

_hiredis_pack: Any
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - the redis extra brings hiredis
    _hiredis_pack = None


def pack_with_hiredis(pool: Any) -> Any:
    """Make `pool`'s connections pack commands with hiredis (C), as redis-py's sync
    connections do, instead of the asyncio connections' Python packer: the same bytes,
    for a fraction of the CPU of every XADD (a worker sends one per task). Returns `pool`."""
    if _hiredis_pack is not None:
        pool.connection_class = _packing(pool.connection_class)
    return pool


@functools.cache
def _packing(cls: type) -> type:
    class HiredisPacking(cls):
        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
                args = (*first.split(), *args[1:])  # "CONFIG GET" is two arguments
            try:
                return [_hiredis_pack(args)]
            except Exception:  # a value hiredis does not take: redis-py says what is wrong
                return super().pack_command(*args)

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{cls.__name__}"
    return HiredisPacking


def xadd(stream: str, fields: dict[bytes, bytes], reply: bool, pipe: Any) -> None:
    pipe.xadd(stream, fields, nomkstream=reply)


async def ranges(client: Any, stream: str, ids: list[Any]) -> list[tuple[Any, dict[bytes, bytes]]]:
    async with client.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.xrange(stream, i, i)
        found = await pipe.execute()
    return [entry for entries in found for entry in entries]


def lease_of(raw: bytes | None, default: float) -> float:
    try:
        message = decode(raw or b"")
    except MalformedMessage:
        return default
    lease = getattr(message, "lease_timeout", None)
    return float(lease) if lease else default


def safe_encode(message: Any) -> bytes:
    """`message` as bytes for a dead letter, whatever it is."""
    try:
        return encode(message)
    except Exception:
        try:
            return repr(message).encode(errors="replace")
        except Exception:
            return f"<{type(message).__name__}>".encode()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


async def each_exists(client: Any, names: list[str]) -> list[Any]:
    """EXISTS for each of `names`, in one pipeline."""
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(name)
        return list(await pipe.execute())
