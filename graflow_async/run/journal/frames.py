"""A durable run's journal as bytes: records framed for an append-only file.

    record = length (u32, big-endian) | its complement (u32) | CRC-32 of the body (u32) | body
    body   = seq (u64) | epoch (u32) | fact  (fact: the run's own msgpack bytes)

A batch of facts is one write of consecutive records. Reading checks every record: a
record cut short at the end of the file (a write torn by a crash) ends the journal
there and is ignored; anything else that does not check (a bad checksum with records
after it, a length past the cap, a sequence that skips) is a `JournalCorrupt` naming the
run. A pure module: bytes in, records out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from graflow_async.exceptions import GraflowError

HEADER = struct.Struct(">III")
STAMP = struct.Struct(">QI")  # a body's seq and epoch, before its fact
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
    """The records of `facts`, numbered from `first_seq`, as one write."""
    out = bytearray()
    header, stamp, crc32 = HEADER.pack, STAMP.pack, zlib.crc32
    for i, fact in enumerate(facts):
        size = len(fact) + STAMP.size
        if size > MAX_RECORD:
            raise ValueError(f"a journal record of {size} bytes is larger than the {MAX_RECORD} allowed")
        head = stamp(first_seq + i, epoch)
        out += header(size, size ^ _ALL, crc32(fact, crc32(head)))
        out += head
        out += fact
    return bytes(out)


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
        record = _record(body, run_id, at)
        if expected is not None and record.seq != expected:
            raise JournalCorrupt(
                run_id, f"journal of run {run_id}: record {record.seq} at offset {at} where {expected} was due"
            )
        records.append(record)
        expected = record.seq + 1
        at = body_at + length
    return records, at


def _record(body: bytes, run_id: str, offset: int) -> Record:
    if len(body) < STAMP.size:
        raise JournalCorrupt(run_id, f"journal of run {run_id}: record at offset {offset} is not seq, epoch, fact")
    seq, epoch = STAMP.unpack_from(body)
    if epoch < 1:
        raise JournalCorrupt(run_id, f"journal of run {run_id}: record at offset {offset} has no epoch")
    return Record(seq, epoch, body[STAMP.size :])
