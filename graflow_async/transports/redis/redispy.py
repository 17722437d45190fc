"""What the connection layer needs of redis-py, for the URLs and clients the lean path
does not serve (TLS, RESP3, a client given by the application): raw commands on a pooled
connection, packed by hiredis, error replies as `ReplyError` values like the lean path's."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as redis_errors

from graflow_async.transports.redis.errors import ReplyError, error_code

_hiredis_pack: Any
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - the redis extra brings hiredis
    _hiredis_pack = None

# redis-py strips the code of the error replies it knows and says it by the class instead
_CODES: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.BusyLoadingError, "LOADING"),
    (redis_errors.ReadOnlyError, "READONLY"),
    (redis_errors.OutOfMemoryError, "OOM"),
    (redis_errors.NoPermissionError, "NOPERM"),
    (redis_errors.ExecAbortError, "EXECABORT"),
    (redis_errors.NoScriptError, "NOSCRIPT"),
    (redis_errors.MasterDownError, "MASTERDOWN"),
    (redis_errors.ClusterDownError, "CLUSTERDOWN"),
    (redis_errors.TryAgainError, "TRYAGAIN"),
    (redis_errors.AuthenticationError, "NOAUTH"),
)


def reply_error(exc: redis_errors.RedisError) -> ReplyError:
    """A redis-py error reply as the text Redis sent, code first."""
    text = str(exc)
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return ReplyError(text if text.startswith(code) else f"{code} {text}")
    return ReplyError(text if error_code(text) != "ERR" or text.startswith("ERR") else f"ERR {text}")


async def execute_on_pool(pool: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send `commands` on one connection of `pool` in one write and read their raw answers
    (an error answer a `ReplyError` in its place): a pipeline without redis-py's Pipeline,
    which releases its connection through a task of its own and a shield, on every batch.
    A connection interrupted mid-read is dropped, never handed out again half read."""
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        answers: list[Any] = []
        for _ in commands:
            try:
                answers.append(await connection.read_response(disconnect_on_error=False))
            except (redis_errors.ResponseError, redis_errors.BusyLoadingError) as exc:
                answers.append(reply_error(exc))
    except BaseException:
        await asyncio.shield(_drop(pool, connection))
        raise
    await pool.release(connection)
    return answers


async def _drop(pool: Any, connection: Any) -> None:
    try:
        await connection.disconnect()
    finally:
        await pool.release(connection)


def pack_with_hiredis(pool: Any) -> Any:
    """Make `pool`'s connections pack commands with hiredis (C), as redis-py's sync
    connections do, instead of the asyncio connections' Python packer: the same bytes,
    for a fraction of the CPU. Returns `pool`."""
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


def redact(url: str) -> str:
    """`url` without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))


def describe(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
