"""The msgpack codec shared by checkpoints and the Redis wire format.

``packb(obj) -> bytes`` and ``unpackb(data) -> obj`` round-trip, keeping both type and
value, these types:

* natively: ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``,
  ``list`` and ``dict`` (keys may be any supported hashable value: ``int``, ``tuple``, ...);
* as msgpack extension types: ``tuple``, ``set``, ``frozenset``, ``datetime.datetime``,
  ``datetime.date``, ``datetime.time``, ``datetime.timedelta``, ``uuid.UUID``,
  ``decimal.Decimal`` and paths (``pathlib.Path``, ``PurePosixPath``, ``PureWindowsPath``).

Types are matched exactly, never by ``isinstance``: a subclass (``IntEnum``, a
``namedtuple``, ``OrderedDict``, a ``Path`` subclass) raises ``TypeError`` naming the
type rather than coming back as something else. Two known reductions:

* a ``datetime`` or ``time`` whose tzinfo is not a fixed offset (``zoneinfo.ZoneInfo``,
  ``dateutil`` zones) comes back with a ``datetime.timezone`` of the offset in effect and
  the zone's abbreviation as its name: the same instant, but no DST rules. A tzinfo
  whose ``utcoffset()`` is ``None`` is dropped (the value comes back naive);
* ``bytearray`` and ``memoryview`` are packed natively by msgpack and come back as
  ``bytes``.

Never uses pickle: decoding cannot run code.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

import msgpack

__all__ = ["packb", "unpackb"]

# Extension type codes: part of the on-disk and wire format, never renumber.
_TUPLE, _SET, _FROZENSET = 1, 2, 3
_DATETIME, _DATE, _TIME, _TIMEDELTA = 4, 5, 6, 7
_UUID, _DECIMAL, _PATH, _BIGINT = 8, 9, 10, 11

_DATE_FMT = struct.Struct(">HBB")
_CLOCK_FMT = struct.Struct(">BBBIB")  # hour, minute, second, microsecond, fold
_DATETIME_FMT = struct.Struct(">HBBBBBIB")
_OFFSET_FMT = struct.Struct(">q")  # UTC offset in microseconds
_TIMEDELTA_FMT = struct.Struct(">iiI")  # days, seconds, microseconds
_ONE_US = dt.timedelta(microseconds=1)

_PATH_KINDS: dict[type, bytes] = {
    type(Path()): b"P",
    PurePosixPath: b"p",
    PureWindowsPath: b"w",
}
_PATH_TYPES: dict[int, type[PurePath]] = {
    ord("P"): Path,
    ord("p"): PurePosixPath,
    ord("w"): PureWindowsPath,
}

# Packers are not reentrant (extension types pack their items from inside `default`)
# nor thread-safe, so each packb call borrows one from this free list.
_free_packers: list[msgpack.Packer] = []


def packb(obj: Any, *, max_nesting: int | None = None) -> bytes:
    """Serialize `obj` to msgpack bytes; raise ``TypeError`` naming an unsupported type, and
    `TooDeep` for tuples, sets or frozensets nested more than `max_nesting` deep (default
    `MAX_NESTING`)."""
    outermost = _limit_nesting(max_nesting)
    try:
        packer = _free_packers.pop()
    except IndexError:
        packer = msgpack.Packer(default=_default, use_bin_type=True, strict_types=True)
    try:
        return packer.pack(obj)  # autoreset: the buffer is cleared even on errors
    finally:
        _free_packers.append(packer)
        if outermost:
            _nesting.limit = None


def unpackb(data: bytes | bytearray | memoryview, *, max_nesting: int | None = None) -> Any:
    """Deserialize bytes made by `packb`; raise ``ValueError`` or ``TypeError`` if malformed
    (`TooDeep`, a ValueError, for tuples, sets or frozensets nested more than `max_nesting`)."""
    outermost = _limit_nesting(max_nesting)
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    finally:
        if outermost:
            _nesting.limit = None


def _limit_nesting(limit: int | None) -> bool:
    """Set this thread's nesting limit for an outermost call (whether it is one): calls
    nested in it, for tuples inside tuples, keep the outermost's limit and depth."""
    if _nesting.__dict__.get("limit") is not None:
        return False
    _nesting.limit, _nesting.depth = (MAX_NESTING if limit is None else limit), 0
    return True


def _default(obj: Any) -> msgpack.ExtType:
    encoder = _ENCODERS.get(type(obj))
    if encoder is None:
        raise TypeError(f"type {_type_name(obj)} is not supported")
    if type(obj) not in _CONTAINERS:
        code, data = encoder(obj)
        return msgpack.ExtType(code, data)
    depth = _nesting.depth
    if depth >= _nesting.limit:
        raise TooDeep(f"tuples, sets or frozensets nested more than {_nesting.limit} deep")
    _nesting.depth = depth + 1
    try:
        code, data = encoder(obj)
    finally:
        _nesting.depth = depth
    return msgpack.ExtType(code, data)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _encode_offset(value: dt.datetime | dt.time) -> bytes:
    offset = value.utcoffset()
    if offset is None:
        return b""
    name = value.tzname()
    default_name = dt.timezone(offset).tzname(None)
    suffix = b"" if name is None or name == default_name else name.encode()
    return _OFFSET_FMT.pack(offset // _ONE_US) + suffix


def _decode_offset(data: bytes) -> dt.timezone | None:
    if not data:
        return None
    offset = dt.timedelta(microseconds=_OFFSET_FMT.unpack_from(data)[0])
    name = data[_OFFSET_FMT.size :]
    return dt.timezone(offset, name.decode()) if name else dt.timezone(offset)


def _encode_datetime(v: dt.datetime) -> tuple[int, bytes]:
    head = _DATETIME_FMT.pack(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, v.fold)
    return _DATETIME, head + _encode_offset(v)


def _decode_datetime(data: bytes) -> dt.datetime:
    y, mo, d, h, mi, s, us, fold = _DATETIME_FMT.unpack_from(data)
    tz = _decode_offset(data[_DATETIME_FMT.size :])
    return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=tz, fold=fold)


def _encode_time(v: dt.time) -> tuple[int, bytes]:
    head = _CLOCK_FMT.pack(v.hour, v.minute, v.second, v.microsecond, v.fold)
    return _TIME, head + _encode_offset(v)


def _decode_time(data: bytes) -> dt.time:
    h, mi, s, us, fold = _CLOCK_FMT.unpack_from(data)
    return dt.time(h, mi, s, us, tzinfo=_decode_offset(data[_CLOCK_FMT.size :]), fold=fold)


def _decode_timedelta(data: bytes) -> dt.timedelta:
    days, seconds, micros = _TIMEDELTA_FMT.unpack(data)
    return dt.timedelta(days, seconds, micros)


def _encode_int(v: int) -> tuple[int, bytes]:
    # Only reached for ints outside msgpack's 64-bit range.
    return _BIGINT, v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)


def _encode_path(v: PurePath) -> tuple[int, bytes]:
    return _PATH, _PATH_KINDS[type(v)] + str(v).encode()


def _decode_path(data: bytes) -> PurePath:
    return _PATH_TYPES[data[0]](data[1:].decode())


_ENCODERS: dict[type, Callable[[Any], tuple[int, bytes]]] = {
    tuple: lambda v: (_TUPLE, packb(list(v))),
    set: lambda v: (_SET, packb(list(v))),
    frozenset: lambda v: (_FROZENSET, packb(list(v))),
    dt.datetime: _encode_datetime,
    dt.date: lambda v: (_DATE, _DATE_FMT.pack(v.year, v.month, v.day)),
    dt.time: _encode_time,
    dt.timedelta: lambda v: (_TIMEDELTA, _TIMEDELTA_FMT.pack(v.days, v.seconds, v.microseconds)),
    uuid.UUID: lambda v: (_UUID, v.bytes),
    Decimal: lambda v: (_DECIMAL, str(v).encode()),
    int: _encode_int,
    **{cls: _encode_path for cls in _PATH_KINDS},
}

_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _TUPLE: lambda data: tuple(unpackb(data)),
    _SET: lambda data: set(unpackb(data)),
    _FROZENSET: lambda data: frozenset(unpackb(data)),
    _DATETIME: _decode_datetime,
    _DATE: lambda data: dt.date(*_DATE_FMT.unpack(data)),
    _TIME: _decode_time,
    _TIMEDELTA: _decode_timedelta,
    _UUID: lambda data: uuid.UUID(bytes=data),
    _DECIMAL: lambda data: Decimal(data.decode()),
    _PATH: _decode_path,
    _BIGINT: lambda data: int.from_bytes(data, "big", signed=True),
}


MAX_NESTING = 128  # tuples, sets and frozensets inside each other (a few hundred overflow the C stack)
_nesting = threading.local()  # the limit and depth of the outermost packb/unpackb of this thread
_CONTAINERS = frozenset({tuple, set, frozenset})


class TooDeep(ValueError):
    """A value nested deeper than its decoder allows: here tuples, sets or frozensets more
    than `MAX_NESTING` deep; the web app raises it too, for JSON bodies nested too deep."""


def _ext_hook(code: int, data: bytes) -> Any:
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise ValueError(f"unknown msgpack extension type {code}")
    # Each nested tuple or set is decoded by a nested unpack with a large C stack frame: a
    # few hundred inside each other would overflow the stack, so the depth is bounded.
    depth = _nesting.depth
    if depth >= _nesting.limit:
        raise TooDeep(f"tuples, sets or frozensets nested more than {_nesting.limit} deep")
    _nesting.depth = depth + 1
    try:
        return decoder(data)
    except TooDeep:
        raise
    except (ValueError, TypeError, LookupError, struct.error, ArithmeticError) as exc:
        raise ValueError(f"invalid msgpack extension type {code}: {exc}") from exc
    finally:
        _nesting.depth = depth


def check_value(key: Any, value: Any) -> None:
    """TypeError naming `key` when `value` cannot be serialized (a channel may be sent
    to workers, and a checkpoint saves it)."""
    if not isinstance(key, str):
        raise TypeError(f"channel keys are strings, got {key!r}")
    try:
        packb(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"channel key {key!r}: a value of type {type(value).__name__} cannot be serialized ({exc})"
        ) from exc
