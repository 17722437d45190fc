"""A durable run's journal as bytes: records framed for an append-only file.

    frame = length (u32, big-endian) | its complement (u32) | CRC-32 of the body (u32) | body
    body  = first seq (u64) | epoch (u32) | count (u32) | (fact length (u32) | fact) * count
            (a fact: the run's own msgpack bytes; the frame's records are numbered from first seq)

A batch of facts is one write of one frame (more when it is larger than `MAX_RECORD`),
so a batch (a turn of the run) is kept whole or not at all. Reading checks every frame:
a frame cut short at the end of the file (a write torn by a crash) ends the journal
there and is ignored, and so does a header whose check word is zero (never a frame's:
the complement of a length under `MAX_RECORD`; a segment's unwritten rest, or a frame
whose copy a crash cut short, `segment`); anything else that does not check (a bad
checksum with frames after it, a length past the cap, a sequence that skips) is a
`JournalCorrupt` naming the run. A pure module: bytes in, records out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from graflow_async.exceptions import GraflowError

HEADER = struct.Struct(">III")
STAMP = struct.Struct(">QII")  # a body's first seq, epoch and count, before its facts
LENGTH = struct.Struct(">I")
_ALL = 0xFFFFFFFF
MAX_RECORD = 64 << 20  # bytes of one record's body


class JournalError(GraflowError):
    """A durable run's journal cannot be used; `run_id` names the run."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class JournalCorrupt(JournalError):
    """The journal holds bytes that are not its records (not a torn last write)."""


class Record(NamedTuple):
    seq: int  # 0, 1, 2... across the run's whole journal
    epoch: int  # the incarnation that wrote it
    fact: bytes


def batch(first_seq: int, epoch: int, facts: Sequence[bytes]) -> bytes:
    """The records of `facts`, numbered from `first_seq`, as one write: one frame, or as
    many as keep each under `MAX_RECORD`."""
    return b"".join(batch_parts(first_seq, epoch, facts))


TWO = struct.Struct(">QIII")  # a body's stamp and its first fact's length, when it holds two
UNCHECKED = struct.Struct(">I4xI")  # a header but for its check word (length, zeros, CRC-32)
# (`FileJournal.append_now` builds the usual turn's frame, a fact and its step, with these:
# the body, the header but its check word, then the check word, copied in in that order)


def batch_parts(first_seq: int, epoch: int, facts: Sequence[bytes]) -> list[bytes]:
    """`batch` as its buffers, in order (nothing copied to join them)."""
    out: list[bytes] = []
    start, size = 0, STAMP.size
    for i, fact in enumerate(facts):
        grown = size + LENGTH.size + len(fact)
        if grown > MAX_RECORD and i > start:
            _frame(out, first_seq + start, epoch, facts[start:i], size)
            start, grown = i, STAMP.size + LENGTH.size + len(fact)
        if grown > MAX_RECORD:
            raise ValueError(f"a journal record of {len(fact)} bytes is larger than the {MAX_RECORD} allowed")
        size = grown
    _frame(out, first_seq + start, epoch, facts[start:], size)
    return out


def _frame(out: list[bytes], first_seq: int, epoch: int, facts: Sequence[bytes], size: int) -> None:
    """Append to `out` the buffers of one frame of `facts` (its body `size` bytes)."""
    at = len(out)
    out.append(b"")  # its header, once the checksum is known
    stamp = STAMP.pack(first_seq, epoch, len(facts))
    out.append(stamp)
    crc, crc32, length = zlib.crc32(stamp), zlib.crc32, LENGTH.pack
    for fact in facts:
        n = length(len(fact))
        crc = crc32(fact, crc32(n, crc))
        out.append(n)
        out.append(fact)
    out[at] = HEADER.pack(size, size ^ _ALL, crc)


def parse(data: bytes, run_id: str, *, first_seq: int | None = None) -> tuple[list[Record], int]:
    """The records in `data` and how many bytes they take (the rest, if any, is a torn
    last write). `first_seq`: the sequence the first record must carry (None: any)."""
    records: list[Record] = []
    at, end = 0, len(data)
    expected = first_seq
    while at < end:
        if end - at < HEADER.size:
            break  # a torn header
        length, check, crc = HEADER.unpack_from(data, at)
        if check == 0:
            break  # a frame whose copy into a mapped segment was cut short, or the segment's unwritten rest
        if length ^ check != _ALL or length > MAX_RECORD:  # a garbled length is never taken for a torn tail
            raise JournalCorrupt(run_id, f"journal of run {run_id}: a record header at offset {at} does not check")
        body_at = at + HEADER.size
        if body_at + length > end:
            break  # a torn body
        body = data[body_at : body_at + length]
        if zlib.crc32(body) != crc:
            if body_at + length == end:
                break  # the last record, written in part: torn
            raise JournalCorrupt(run_id, f"journal of run {run_id}: a record at offset {at} fails its checksum")
        found = _records(body, run_id, at)
        if expected is not None and found and found[0].seq != expected:
            raise JournalCorrupt(
                run_id, f"journal of run {run_id}: record {found[0].seq} at offset {at} where {expected} was due"
            )
        records.extend(found)
        if found:
            expected = found[-1].seq + 1
        at = body_at + length
    return records, at


def _records(body: bytes, run_id: str, offset: int) -> list[Record]:
    """The records of one frame's `body` (its checksum already checked)."""
    bad = f"journal of run {run_id}: the frame at offset {offset}"
    if len(body) < STAMP.size:
        raise JournalCorrupt(run_id, f"{bad} is not first seq, epoch, count, facts")
    first, epoch, count = STAMP.unpack_from(body)
    if epoch < 1:
        raise JournalCorrupt(run_id, f"{bad} has no epoch")
    out, at, end = [], STAMP.size, len(body)
    for i in range(count):
        if end - at < LENGTH.size:
            raise JournalCorrupt(run_id, f"{bad} ends before its fact {i}")
        (size,) = LENGTH.unpack_from(body, at)
        at += LENGTH.size
        if end - at < size:
            raise JournalCorrupt(run_id, f"{bad} ends inside its fact {i}")
        out.append(Record(first + i, epoch, body[at : at + size]))
        at += size
    if at != end:
        raise JournalCorrupt(run_id, f"{bad} holds bytes after its {count} facts")
    return out
