"""Adoption of durable runs whose driver died (SPEC 10), around a worker or `serve`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def adopting(url: str | None, namespace: str, secret: Any = None) -> AsyncIterator[None]:
    """While the block runs, adopt the durable runs of `namespace` on `url` whose driver
    died (`run.adopt`); None: adopt nothing. On the way out the adopted runs are let go."""
    if url is None:
        yield
        return
    from graflow_async.run.adopt import Adopter
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(url, namespace=namespace, secret=secret) as transport:
        task = asyncio.create_task(Adopter(transport).run(), name="adopter")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
