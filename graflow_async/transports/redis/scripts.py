"""Lua scripts through the connection layer: sent by digest (EVALSHA), and in full (EVAL)
only when the server does not know them yet (``NOSCRIPT``: a fresh or restarted server),
which also loads them for the next call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import Refused


class Script:
    """One Lua script; call it with the connection, its keys and its arguments."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self,
        conn: RedisConnection,
        keys: Sequence[str],
        args: Sequence[Any] = (),
        *,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """The script's answer (read by `parse`); `Refused` when it fails (its error's code
        first: a ``WRONGTYPE`` of a command inside it stays ``WRONGTYPE``)."""
        try:
            return await conn.call("EVALSHA", self.sha, len(keys), *keys, *args, parse=parse)
        except Refused as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await conn.call("EVAL", self.source, len(keys), *keys, *args, parse=parse)
