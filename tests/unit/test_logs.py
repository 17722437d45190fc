"""`logs.as_text`: the one way bytes-or-anything becomes text for a log line or a message."""

from __future__ import annotations

import sys

import pytest

from graflow_async.logs import as_text


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("text", "text"),
        (b"1712-0", "1712-0"),  # a Redis entry id
        (b"caf\xc3\xa9 \xff", "café \ufffd"),  # undecodable bytes replaced, not raised
        (None, "None"),
        (42, "42"),
        (ValueError("bad"), "bad"),
        (Unprintable(), "<Unprintable that cannot be shown: RuntimeError>"),
    ],
)
def test_as_text_shows_anything_and_never_raises(value: object, shown: str) -> None:
    assert as_text(value) == shown


def test_an_int_too_long_to_print_shows_as_a_placeholder() -> None:
    assert as_text(10 ** (sys.get_int_max_str_digits() + 1)) == "<int that cannot be shown: ValueError>"
