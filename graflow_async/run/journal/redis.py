"""`RedisJournal`: a durable run's journal on the run's Redis server (SPEC 10).

    <ns>:run:{<run_id>}:journal    the facts, a stream: entry ``0-<seq + 1>`` holds facts `seq`,
                                   `seq + 1`... (one ``f`` field each: an append's batch, in
                                   entries of at most `ENTRY_FACTS`)
    <ns>:run:{<run_id>}:snapshot   the compacted state: upto, data
    <ns>:run:{<run_id>}:owner      the owner record the run's incarnations share (`owners`)

Every key of a run shares the hash tag ``{run_id}``. An append is one script: check
that the caller's epoch is the owner record's, then XADD the batch's facts as one entry
(or a few); a fenced-out owner gets ``FENCED`` and nothing is written. The script is
told where the batch starts (the owner record's ``seq``): a batch sent again after a lost
connection is not written twice, and a journal that lost facts (Redis restarted without
persistence) refuses with ``GAP``. Nothing read back is trusted: an entry that is not a
fact is a `JournalCorrupt` naming the run.

`RedisJournalWriter` sends a turn's task messages in the round trip that journals its
facts, after them (SPEC 10: durability adds no round trip per task).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graflow_async.exceptions import TransportError
from graflow_async.run.journal.base import Fenced, Journal, Replay
from graflow_async.run.journal.frames import MAX_RECORD, JournalCorrupt
from graflow_async.transports.keys import reply_queue
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.transports.redis.errors import Refused
from graflow_async.transports.redis.scripts import Script

READ_CHUNK = 10_000
_FENCE = """
local current = redis.call('HGET', KEYS[1], 'epoch')
if not current then return redis.error_reply('GAP the run has no owner record: its keys are gone') end
if current ~= ARGV[1] then return redis.error_reply('FENCED another epoch holds the run') end
"""
_APPEND_SOURCE = (
    _FENCE
    + """
local first, n = tonumber(ARGV[2]), #ARGV - 3
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq == first + n then return seq end
if seq ~= first then return redis.error_reply('GAP the journal holds ' .. seq .. ' facts, not ' .. first) end
local i = 1
while i <= n do
  local entry = {KEYS[2], '0-' .. (first + i)}
  for j = i, math.min(n, i + ENTRY_FACTS - 1) do
    entry[#entry + 1] = 'f'
    entry[#entry + 1] = ARGV[j + 3]
  end
  redis.call('XADD', unpack(entry))
  i = i + ENTRY_FACTS
end
redis.call('HSET', KEYS[1], 'seq', first + n)
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3]) end
return first + n
"""
)
ENTRY_FACTS = 1000  # facts one stream entry holds at most (Lua's unpack takes a few thousand values)
_APPEND_SOURCE = _APPEND_SOURCE.replace("ENTRY_FACTS", str(ENTRY_FACTS))
_APPEND = Script(_APPEND_SOURCE)
_COMPACT = Script(  # the entries wholly before `upto` go (one holding facts on both sides of it stays)
    _FENCE
    + """
local upto = tonumber(ARGV[2])
local keep = '0-' .. (upto + 1)
local before = redis.call('XREVRANGE', KEYS[2], '0-' .. upto, '-', 'COUNT', 1)[1]
if before and tonumber(string.match(before[1], '^0%-(%d+)$')) - 1 + #before[2] / 2 > upto then keep = before[1] end
redis.call('HSET', KEYS[3], 'upto', ARGV[2], 'data', ARGV[3])
redis.call('XTRIM', KEYS[2], 'MINID', keep)
return 1
"""
)


class RedisJournal(Journal):
    def __init__(self, transport: RedisStreamsTransport, run_id: str) -> None:
        self.run_id = run_id
        self.transport = transport
        keys = transport.keys
        self._keys = [keys.owner(run_id), keys.journal(run_id), keys.snapshot(run_id)]
        self._replies = keys.stream(reply_queue(run_id))
        self._owner = ""
        self.next_seq = 0

    async def claim(self, owner: str, lease: float) -> int | None:
        self._owner = owner
        epoch = await self.transport.owners.adopt(self.run_id, lease, owner)
        if epoch is not None:
            self.next_seq = (await self.read()).next_seq
        return epoch

    async def create(self, header: bytes, owner: str, lease: float) -> int | None:
        """A new durable run, its header written with its first epoch; None when it exists."""
        self._owner = owner
        self.next_seq = 0
        return await self.transport.owners.create(self.run_id, lease, owner, header)

    async def begin(self, owner: str, lease: float) -> int:
        """A new durable run: its first epoch."""
        self._owner = owner
        self.next_seq = 0
        return await self.transport.owners.begin(self.run_id, lease, owner, durable=True)

    async def renew(self, epoch: int, lease: float) -> bool:
        return await self.transport.owners.renew(self.run_id, epoch, lease, self._owner, durable=True)

    async def release(self, epoch: int) -> None:
        await self.transport.owners.end(self.run_id, epoch)

    async def append(self, epoch: int, facts: Sequence[bytes]) -> int:
        if not facts:
            return self.next_seq
        return self.appended(await self.append_answer(epoch, facts, None), epoch, len(facts))

    @property
    def _append_keys(self) -> list[str]:
        return [*self._keys[:2], self._replies]

    def append_command(self, epoch: int, facts: Sequence[bytes], consumed: bytes | None = None) -> tuple[Any, ...]:
        """The append of `facts` as one command, to send ahead of others (`appended` reads
        its answer); with `consumed`, the run's reply stream is trimmed up to that entry
        (its replies are in the facts journaled), once the facts are in."""
        return ("EVALSHA", _APPEND.sha, 3, *self._append_keys, *self.append_args(epoch, facts, consumed))

    def append_args(self, epoch: int, facts: Sequence[bytes], consumed: bytes | None) -> list[Any]:
        return [epoch, self.next_seq, _after(consumed) if consumed else "", *facts]

    async def append_answer(self, epoch: int, facts: Sequence[bytes], consumed: bytes | None) -> Any:
        """`append_command` on its own round trip (by digest, in full if the server lost the
        script): its answer, a refusal as a value (`appended` judges it)."""
        try:
            return await _APPEND(self.transport.conn, self._append_keys, self.append_args(epoch, facts, consumed))
        except Refused as exc:
            return exc

    def appended(self, answer: Any, epoch: int, count: int) -> int:
        """The sequence after an append of `count` facts answered `answer`; `Fenced`, or the
        refusal, when it was not written."""
        if isinstance(answer, Refused):
            raise self._fenced(answer, epoch)
        if answer != self.next_seq + count:
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: an append answered {answer!r}")
        self.next_seq = answer
        return answer

    async def compact(self, epoch: int, snapshot: bytes, upto: int) -> None:
        try:
            await _COMPACT(self.transport.conn, self._keys, [epoch, upto, snapshot])
        except Refused as exc:
            raise self._fenced(exc, epoch) from None

    def _fenced(self, exc: Refused, epoch: int) -> Exception:
        if exc.code == "FENCED":
            return Fenced(self.run_id, f"run {self.run_id} was taken over: the owner of epoch {epoch} writes nothing")
        if exc.code == "GAP":
            return TransportError(
                f"the journal of durable run {self.run_id} lost facts on Redis ({str(exc)[:120]}; "
                f"this driver wrote {self.next_seq}): was Redis restarted without persistence? The run stops"
            )
        return exc

    async def read(self) -> Replay:
        conn = self.transport.conn
        owner, journal, snap = self._keys
        found = await conn.pipeline([("HMGET", snap, "upto", "data"), ("HGET", owner, "epoch")])
        for answer in found:
            if isinstance(answer, Refused):
                raise answer
        upto, snapshot = self._snapshot(found[0])
        epoch = _int(found[1], self.run_id, "the owner's epoch") if found[1] is not None else 0
        facts: list[bytes] = []
        start = "-"  # (the first entry may hold facts the snapshot covers: left out below)
        while True:
            chunk = await conn.call("XRANGE", journal, start, "+", "COUNT", READ_CHUNK)
            if not isinstance(chunk, list):
                raise JournalCorrupt(
                    self.run_id, f"journal of run {self.run_id}: XRANGE answered {type(chunk).__name__}"
                )
            for item in chunk:
                seq, held = self._entry(item)
                if seq < upto and not facts:  # an entry the snapshot covers, wholly or in part
                    held, seq = held[upto - seq :], max(seq, upto)
                if seq != upto + len(facts):
                    raise JournalCorrupt(
                        self.run_id, f"journal of run {self.run_id}: fact {seq} where {upto + len(facts)} was due"
                    )
                facts.extend(held)
            if len(chunk) < READ_CHUNK:
                return Replay(snapshot, upto, facts, epoch)
            start = f"0-{upto + len(facts) + 1}"

    def _snapshot(self, answer: Any) -> tuple[int, bytes | None]:
        if not isinstance(answer, list) or len(answer) != 2:
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: its snapshot is not a hash")
        upto, data = answer
        if upto is None and data is None:
            return 0, None
        if not isinstance(data, bytes) or len(data) > MAX_RECORD:
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: its snapshot has no data")
        return _int(upto, self.run_id, "the snapshot's upto"), data

    def _entry(self, item: Any) -> tuple[int, list[bytes]]:
        """The first fact number of an entry, and its facts."""
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: an entry that is not [id, fields]")
        entry_id, fields = item
        names, facts = fields[0::2], fields[1::2]
        if not facts or len(names) != len(facts) or any(n != b"f" for n in names):
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: entry {entry_id!r} is not facts")
        if not all(isinstance(f, bytes) for f in facts):
            raise JournalCorrupt(self.run_id, f"journal of run {self.run_id}: entry {entry_id!r} is not facts")
        return _seq(entry_id, self.run_id), facts


def _after(entry_id: bytes) -> bytes:
    """The smallest stream id above `entry_id` (MINID keeps ids from there on)."""
    ms, _, n = entry_id.partition(b"-")
    return b"%s-%d" % (ms, int(n or 0) + 1)


def _seq(entry_id: Any, run_id: str) -> int:
    """Fact number of stream entry ``0-<seq + 1>``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, n = text.partition("-")
    if ms != "0" or not n.isdigit() or int(n) < 1:
        raise JournalCorrupt(run_id, f"journal of run {run_id}: entry id {text[:40]!r} is not a fact's")
    return int(n) - 1


def _int(value: Any, run_id: str, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise JournalCorrupt(run_id, f"journal of run {run_id}: {what} is not a number") from None
    if number < 0:
        raise JournalCorrupt(run_id, f"journal of run {run_id}: {what} is negative")
    return number


class RedisJournalWriter:
    """Journals each turn of a durable run on Redis (a `run.recording.FactWriter`): the
    append and the turn's task messages to this journal's server in one round trip, the
    append first. When it is fenced out the messages went out all the same, carrying the
    old epoch: workers skip them."""

    write_now = None  # its appends ride in the turn's round trip: awaited

    def __init__(self, journal: RedisJournal, epoch: int) -> None:
        self.journal = journal
        self.epoch = epoch

    @property
    def next_seq(self) -> int:
        return self.journal.next_seq

    async def compact(self, snapshot: bytes, upto: int) -> None:
        await self.journal.compact(self.epoch, snapshot, upto)

    async def write(self, records: list[bytes], sends: list[Any], consumed: bytes | None = None) -> list[Any]:
        journal = self.journal
        transport = journal.transport
        mine = [(route.task_queue, messages) for route, messages in sends if route.transport is transport]
        rest = [(route, messages) for route, messages in sends if route.transport is not transport]
        answer, refused = await transport.send_after(journal.append_command(self.epoch, records, consumed), mine)
        if isinstance(answer, Refused) and answer.code == "NOSCRIPT":  # a server that lost its scripts (restarted)
            # the turn's messages went out first: a driver dying now leaves them in flight, its facts
            # still in the reply stream (trimmed only by an append), as before any append
            answer = await journal.append_answer(self.epoch, records, consumed)
        journal.appended(answer, self.epoch, len(records))
        if refused is not None:
            raise refused
        return rest
