"""Redis Streams: the transport for runs spread over worker processes (SPEC section 7).

connection.py  the one connection layer: lean hiredis path or redis-py, outages
               waited out, refusals raised, malformed answers dropped (errors.py)
transport.py   RedisStreamsTransport: the task queue (a consumer group) and sends
claims.py      heartbeats, reclaiming, releasing and dead-lettering entries
reader.py      one XREAD for every single-reader stream, and lost-entry checks
batch.py       a worker's replies and acks of one loop turn in one round trip
entries.py     how a message sits in a stream entry (payload, signature, limits)
"""

from graflow_async.transports.redis.errors import GroupsLost, MalformedReply, Refused
from graflow_async.transports.redis.transport import RedisStreamsTransport

__all__ = ["GroupsLost", "MalformedReply", "RedisStreamsTransport", "Refused"]
