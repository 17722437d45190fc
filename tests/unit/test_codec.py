"""The msgpack codec: every supported type round-trips with its exact type and value."""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
import zoneinfo
from collections import OrderedDict, namedtuple
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

from graflow_async.wire.codec import packb, unpackb

UTC = dt.UTC
ODD_OFFSET = dt.timezone(dt.timedelta(hours=-3, minutes=-30, seconds=-15, microseconds=-7))

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
    2**64,
    -(2**63) - 1,
    10**40,
    -(10**40),
    1.5,
    -0.0,
    math.inf,
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    [],
    [1, "a", None],
    {},
    {"a": 1},
    (),
    (1,),
    (1, "two", (3.0, ())),
    set(),
    {1, 2, 3},
    frozenset(),
    frozenset({"a", ("b", 1)}),
    dt.datetime(2024, 2, 29, 23, 59, 58, 999999),
    dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=ODD_OFFSET),
    dt.datetime(2024, 11, 3, 1, 30, fold=1),
    dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2), "EET")),
    dt.date(2024, 2, 29),
    dt.date.min,
    dt.date.max,
    dt.time(),
    dt.time(23, 59, 59, 999999),
    dt.time(12, 0, tzinfo=ODD_OFFSET),
    dt.timedelta(),
    dt.timedelta(days=-1, microseconds=1),
    dt.timedelta.max,
    dt.timedelta.min,
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159265358979323846264338327950288419"),
    Decimal("-0.00"),
    Decimal("1E+100"),
    Decimal("Infinity"),
    Path("/tmp/a b/c.txt"),
    Path("relative/dir"),
    PurePosixPath("/x/y"),
    PureWindowsPath(r"C:\Users\x"),
]


@pytest.mark.parametrize("value", VALUES, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(VALUES)])
def test_round_trip_keeps_type_and_value(value: Any) -> None:
    result = unpackb(packb(value))
    assert type(result) is type(value)
    assert result == value


def test_datetime_offset_name_and_fold_survive() -> None:
    named = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2), "EET"))
    assert unpackb(packb(named)).tzname() == "EET"
    assert unpackb(packb(dt.datetime(2024, 1, 1, tzinfo=UTC))).tzinfo is UTC
    assert unpackb(packb(dt.datetime(2024, 11, 3, 1, 30, fold=1))).fold == 1
    odd = unpackb(packb(dt.time(1, tzinfo=ODD_OFFSET)))
    assert odd.utcoffset() == ODD_OFFSET.utcoffset(None)


def test_zoneinfo_is_reduced_to_its_fixed_offset() -> None:
    paris = dt.datetime(2024, 7, 1, 12, 30, 5, 7, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    result = unpackb(packb(paris))
    assert result == paris  # the same instant
    assert result.utcoffset() == dt.timedelta(hours=2)
    assert result.tzname() == "CEST"
    assert type(result.tzinfo) is dt.timezone


def test_nan_round_trips() -> None:
    assert math.isnan(unpackb(packb(math.nan)))


def test_nested_structures() -> None:
    value = {
        "results": {"train": (0.93, {"epochs": 3, "at": dt.datetime(2024, 5, 1, tzinfo=UTC)})},
        1: [frozenset({(1, 2)}), {Decimal("1.5"), uuid.UUID(int=7)}],
        (1, "a"): {"path": Path("/data"), "wait": dt.timedelta(seconds=90)},
        frozenset({1}): [(), [()], ((),)],
        None: b"raw",
    }
    result = unpackb(packb(value))
    assert result == value
    assert type(result["results"]["train"]) is tuple
    assert type(result[1][0]) is frozenset
    assert type(next(iter(result[1][0]))) is tuple
    assert type(result[frozenset({1})][2][0]) is tuple


def test_deeply_nested_tuples() -> None:
    value: Any = ()
    for i in range(100):
        value = (i, value)
    assert unpackb(packb(value)) == value


def test_bytearray_comes_back_as_bytes() -> None:
    # Documented reduction: msgpack packs bytearray natively as bin.
    assert unpackb(packb(bytearray(b"ab"))) == b"ab"


class Opaque:
    pass


class Colour(enum.IntEnum):
    RED = 1


Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (Opaque(), "Opaque"),
        ([1, {"k": Opaque()}], "Opaque"),
        ((1, Opaque()), "Opaque"),
        ({(1, Opaque()): 2}, "Opaque"),
        (Colour.RED, "Colour"),
        (Point(1, 2), "Point"),
        (OrderedDict(a=1), "OrderedDict"),
        (object(), "object"),
        (1j, "complex"),
    ],
)
def test_unsupported_type_raises_type_error_naming_it(value: Any, name: str) -> None:
    with pytest.raises(TypeError, match=rf"\b{name}\b.*not supported"):
        packb(value)


def test_codec_is_usable_after_a_failure() -> None:
    with pytest.raises(TypeError):
        packb([1, (2, Opaque())])
    assert unpackb(packb([1, (2, 3)])) == [1, (2, 3)]


@pytest.mark.parametrize(
    "data",
    [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xd4\x63\x00", b"\xd5\x05\x00\x01", b"\xc7\x00\x0a"],
    ids=["never-used", "short-array", "extra-data", "unknown-ext", "bad-date", "empty-path"],
)
def test_malformed_data_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpackb(data)


def test_no_pickle_on_decode() -> None:
    import pickle

    with pytest.raises((ValueError, TypeError)):
        unpackb(pickle.dumps({"a": 1}))


def test_nesting_deep_enough_to_overflow_the_stack_is_refused_not_fatal() -> None:
    """Each nested tuple is decoded by a nested unpack with a large C stack frame: a few
    hundred inside each other (a few KB of bytes) used to kill the process."""
    import msgpack

    from graflow_async.wire.codec import MAX_NESTING, TooDeep

    data = msgpack.packb([])
    for _ in range(MAX_NESTING * 4):
        data = msgpack.packb(msgpack.ExtType(1, data))
    with pytest.raises(TooDeep, match="nested more than"):
        unpackb(data)
