"""The Redis transport's connections pack commands with hiredis: the same bytes as
redis-py's own packer, and redis-py's errors for values neither takes."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from graflow_async.transports.redis.redispy import pack_with_hiredis

COMMANDS: list[tuple[Any, ...]] = [
    ("XADD", "graflow:tasks", "*", b"m", b"\x81\xa1t\x01" * 100),
    ("XADD", "s", "NOMKSTREAM", "*", "m", b""),
    ("XREADGROUP", "GROUP", "g", "c", "COUNT", 512, "BLOCK", 500, "STREAMS", "s", ">"),
    ("XACK", "s", "g", b"1-0", "2-0"),
    ("CONFIG GET", "maxmemory"),
    ("SET", "é", 0.1),
    ("SET", "k", -12345678901234567890),
    ("SET", "k", 1e300),
    ("SET", "k", b"x" * 100_000),  # over redis-py's buffer cut-off
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packing_sends_the_same_bytes(command: tuple[Any, ...]) -> None:
    pool = pack_with_hiredis(BlockingConnectionPool.from_url("redis://localhost:1/0"))
    ours, theirs = pool.connection_class(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    assert b"".join(ours.pack_commands([command, command])) == b"".join(theirs.pack_commands([command, command]))


@pytest.mark.parametrize("bad", [None, True, object()])
def test_a_value_neither_packer_takes_is_redis_pys_data_error(bad: Any) -> None:
    pool = pack_with_hiredis(BlockingConnectionPool.from_url("redis://localhost:1/0"))
    with pytest.raises(DataError):
        pool.connection_class().pack_command("SET", "k", bad)


@pytest.mark.parametrize(
    "url, kind",
    [
        ("redis://localhost:1/0", Connection),
        ("rediss://localhost:1/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_every_kind_of_connection_keeps_its_class(url: str, kind: type) -> None:
    pool = pack_with_hiredis(BlockingConnectionPool.from_url(url))
    assert issubclass(pool.connection_class, kind)
