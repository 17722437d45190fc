"""The journal's file frames as pure functions: every cut of the writes reads back as the
whole writes before it (a torn last write is left out: a batch is kept whole or not at
all), and a change to any byte before the last write is an error naming the run, never a
silent loss."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graflow_async.exceptions import RemoteTaskError
from graflow_async.plan.directives import Cancel, Iterate, Terminate
from graflow_async.plan.facts import STEPPED, Failed, RetryCame, Succeeded, Suspended, Wrote
from graflow_async.run.journal.facts import decode, encode
from graflow_async.run.journal.frames import HEADER, JournalCorrupt, batch, parse
from graflow_async.wire.codec import packb

FACTS = st.lists(st.binary(max_size=40), min_size=1, max_size=8)


@given(FACTS, st.data())
def test_any_cut_reads_back_as_the_whole_writes_before_it(facts: list[bytes], data: st.DataObject) -> None:
    writes = [batch(5 + i, 2, [fact]) for i, fact in enumerate(facts[:-1])] + [batch(4 + len(facts), 2, facts[-1:])]
    whole = b"".join(writes)
    cut = data.draw(st.integers(0, len(whole)))
    records, used = parse(whole[:cut], "r1", first_seq=5)
    whole_writes = sum(1 for i in range(len(writes)) if len(b"".join(writes[: i + 1])) <= cut)
    assert len(records) == whole_writes  # each whole write read back; a torn last one left out
    assert [r.fact for r in records] == facts[: len(records)]
    assert [r.seq for r in records] == list(range(5, 5 + len(records)))
    assert all(r.epoch == 2 for r in records)
    assert used <= cut
    if cut == len(whole):  # nothing torn: every record is there
        assert len(records) == len(facts) and used == cut


@given(FACTS, st.data())
def test_a_batch_is_read_back_whole_or_not_at_all(facts: list[bytes], data: st.DataObject) -> None:
    whole = batch(0, 1, facts)
    cut = data.draw(st.integers(0, len(whole)))
    records, _ = parse(whole[:cut], "r1", first_seq=0)
    assert [r.fact for r in records] == (facts if cut == len(whole) else [])


@given(FACTS.filter(lambda f: len(f) >= 2), st.data())
def test_a_changed_byte_before_the_last_write_is_an_error(facts: list[bytes], data: st.DataObject) -> None:
    first = batch(0, 1, facts[:-1])  # a write (a frame) with another after it
    whole = bytearray(first + batch(len(facts) - 1, 1, facts[-1:]))
    last = len(first)  # where the last write begins
    at = data.draw(st.integers(0, last - 1))
    whole[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(JournalCorrupt, match="journal of run r1"):
        parse(bytes(whole), "r1", first_seq=0)


def test_a_sequence_that_skips_is_an_error() -> None:
    data = batch(0, 1, [b"a"]) + batch(2, 1, [b"c"])
    with pytest.raises(JournalCorrupt, match=r"record 2 .* where 1 was due"):
        parse(data, "r1", first_seq=0)


def test_a_header_is_twelve_bytes() -> None:
    assert HEADER.size == 12 and len(batch(0, 1, [b""])) > HEADER.size


@pytest.mark.parametrize(
    "fact",
    [
        Succeeded(3, 1, 2, {"at": dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC), "n": [1, 2]}, 0.25, (Iterate(4),)),
        Succeeded(0, 2, 1, None, 0.0, (Cancel("stop"), Terminate("done"))),
        Failed(1, 1, 3, None, 1.5, False),
        Suspended(2, 1, 1),
        RetryCame(7),
        Wrote("incr", "count", 2.5),
        Wrote("delete", "k", None),
        STEPPED,
    ],
)
def test_facts_round_trip_through_their_bytes(fact: object) -> None:
    assert decode(encode(fact), "r1") == fact


def test_a_failure_keeps_its_error_as_a_remote_error() -> None:
    back = decode(encode(Failed(1, 1, 1, ValueError("bad input"), 0.1, True)), "r1")
    assert isinstance(back.error, RemoteTaskError) and back.error.type_name == "ValueError"
    assert back.error.remote_message == "bad input"


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        packb(["ok", -1, 1, 1, None, 0.0, []]),
        packb(["w", "drop", "k", 1]),
        packb(["step", 1]),
        packb({"x": 1}),
    ],
)
def test_a_record_that_is_not_a_fact_is_an_error_naming_the_run(data: bytes) -> None:
    with pytest.raises(JournalCorrupt, match="journal of run r1"):
        decode(data, "r1")


def test_a_batch_larger_than_a_frame_takes_several(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    frames = importlib.import_module("graflow_async.run.journal.frames")
    monkeypatch.setattr(frames, "MAX_RECORD", 64)
    facts = [bytes([i]) * 20 for i in range(5)]  # 5 facts of 20 bytes: 2 to a 64-byte frame
    data = batch(3, 1, facts)
    records, used = parse(data, "r1", first_seq=3)
    assert [r.fact for r in records] == facts and used == len(data)
    frame, fact = frames.HEADER.size + frames.STAMP.size, frames.LENGTH.size + 20
    assert len(data) == 3 * frame + 5 * fact  # frames of 2, 2 and 1 facts
    with pytest.raises(ValueError, match="larger than"):
        batch(0, 1, [b"x" * 64])


@given(FACTS, st.data())
def test_a_frame_without_its_check_word_ends_the_journal(facts: list[bytes], data: st.DataObject) -> None:
    """A mapped segment's copy cut by a crash (the check word is copied last), or its
    unwritten rest (zeros): the journal ends there, the frames before it read back."""
    first = batch(0, 1, facts[:1])
    copy = bytearray(batch(1, 1, facts[1:] or [b"x"]))
    copy[4:8] = bytes(4)
    landed = data.draw(st.integers(0, len(copy)))  # how much of the rest of the copy landed
    rest = bytes(copy[:landed]) + bytes(len(copy) - landed + data.draw(st.integers(0, 64)))
    records, used = parse(first + rest, "r1", first_seq=0)
    assert [r.fact for r in records] == facts[:1] and used == len(first)
