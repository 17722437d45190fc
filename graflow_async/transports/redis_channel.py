"""A run's channel as a Redis hash, so tasks on workers and the run share it."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from ..codec import packb, unpackb
from ..context import Channel

if TYPE_CHECKING:
    from .redis_streams import RedisStreamsTransport

_MISSING = object()


class RedisChannel(Channel):
    """Channel values msgpack-encoded in the hash `key`; outages are waited out."""

    __slots__ = ("key", "transport")

    def __init__(self, transport: RedisStreamsTransport, key: str) -> None:
        self.transport = transport
        self.key = key

    async def get(self, key: str, default: Any = None) -> Any:
        raw = await self.transport._call("HGET", lambda: self.transport.client.hget(self.key, key))
        return default if raw is None else unpackb(raw)

    async def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"channel keys are strings, got {key!r}")
        try:
            data = packb(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"channel key {key!r}: a value of type {type(value).__name__} cannot be serialized ({exc})"
            ) from exc
        await self.transport._call("HSET", lambda: self.transport.client.hset(self.key, key, data))

    async def update(self, values: dict[str, Any]) -> None:
        """Set several keys at once (a run's initial channel)."""
        if values:
            mapping = {k: packb(v) for k, v in values.items()}
            await self.transport._call("HSET", lambda: self.transport.client.hset(self.key, mapping=mapping))

    async def delete(self, key: str) -> None:
        await self.transport._call("HDEL", lambda: self.transport.client.hdel(self.key, key))

    async def keys(self) -> builtins.list[str]:
        names = await self.transport._call("HKEYS", lambda: self.transport.client.hkeys(self.key))
        return sorted(n.decode() if isinstance(n, bytes) else n for n in names)

    async def snapshot(self) -> dict[str, Any]:
        data = await self.transport._call("HGETALL", lambda: self.transport.client.hgetall(self.key))
        return {(k.decode() if isinstance(k, bytes) else k): unpackb(v) for k, v in data.items()}
