"""Which feedback store a run uses when it is given none: one on the server its transport
shares with workers and web apps, so that their REST API and UI see its questions."""

from __future__ import annotations

import functools
import sys

from graflow_async.feedback.base import FeedbackStore
from graflow_async.transports.base import Transport


@functools.singledispatch
def store_for(transport: Transport) -> FeedbackStore | None:
    """The feedback store runs on `transport` use by default, or None for the default file
    store. A `RedisStreamsTransport` gets a `RedisFeedbackStore` on its connection (which
    the store shares, and does not close) and namespace; another transport can say its
    own with ``store_for.register(MyTransport)``."""
    if "graflow_async.transports.redis.transport" not in sys.modules:
        return None  # never imported, so `transport` is not one (and redis-py stays unloaded)
    from graflow_async.transports.redis import RedisStreamsTransport

    if isinstance(transport, RedisStreamsTransport):
        from graflow_async.feedback.redis import RedisFeedbackStore

        return RedisFeedbackStore(connection=transport.conn, namespace=transport.namespace)
    return None
