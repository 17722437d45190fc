"""The journal's file records as pure functions: every cut of a batch reads back as its
whole records (a torn last write is left out), and a change to any byte before the last
record is an error naming the run, never a silent loss."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graflow_async.run.journal.frames import HEADER, JournalCorrupt, batch, parse

FACTS = st.lists(st.binary(max_size=40), min_size=1, max_size=8)


@given(FACTS, st.data())
def test_any_cut_reads_back_as_the_whole_records_before_it(facts: list[bytes], data: st.DataObject) -> None:
    whole = batch(5, 2, facts)
    cut = data.draw(st.integers(0, len(whole)))
    records, used = parse(whole[:cut], "r1", first_seq=5)
    assert [r.fact for r in records] == facts[: len(records)]
    assert [r.seq for r in records] == list(range(5, 5 + len(records)))
    assert all(r.epoch == 2 for r in records)
    assert used <= cut and (cut < len(whole) or len(records) == len(facts))


@given(FACTS.filter(lambda f: len(f) >= 2), st.data())
def test_a_changed_byte_before_the_last_record_is_an_error(facts: list[bytes], data: st.DataObject) -> None:
    whole = bytearray(batch(0, 1, facts))
    last = len(batch(0, 1, facts[:-1]))  # where the last record begins
    at = data.draw(st.integers(0, last - 1))
    whole[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(JournalCorrupt, match="journal of run r1"):
        parse(bytes(whole), "r1", first_seq=0)


def test_a_sequence_that_skips_is_an_error() -> None:
    data = batch(0, 1, [b"a"]) + batch(2, 1, [b"c"])
    with pytest.raises(JournalCorrupt, match="record 2 .* where 1 was due"):
        parse(data, "r1", first_seq=0)


def test_a_header_is_twelve_bytes() -> None:
    assert HEADER.size == 12 and len(batch(0, 1, [b""])) > HEADER.size
