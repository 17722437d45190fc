"""Transports: where task messages and replies travel (SPEC section 7).

`MemoryTransport` keeps queues in this process (the default); `RedisStreamsTransport`
(needs the ``redis`` extra) puts them in Redis Streams for worker processes.
"""

from typing import Any

from graflow_async.transports.base import Delivery, Transport
from graflow_async.transports.memory import MemoryTransport

__all__ = ["Delivery", "MemoryTransport", "RedisStreamsTransport", "Transport"]


def __getattr__(name: str) -> Any:
    if name == "RedisStreamsTransport":  # imported on use: redis is an optional extra
        from graflow_async.transports.redis import RedisStreamsTransport

        return RedisStreamsTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
