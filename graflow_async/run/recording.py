"""A durable run's recording (SPEC 10): the facts of each turn, encoded as its journal
keeps them (`run.journal.facts`), written before the run acts on them.

The run actor hands every fact here before the plan consumes it: a reply (as
`run.replies.fact_of` reads it), a retry coming due, a channel write. A result or a
channel value the journal cannot keep (msgpack cannot carry it) never reaches the plan
as it is: the result fails its task (a `TypeError` naming the task and the type, so the
run's `TaskFailedError` names both), the channel write raises in the task that made it.

A run taken over from a driver that died *inherits* the attempts that were running:
their replies, which carry the dead driver's epoch, are the only ones of a former
incarnation the run takes (each at most once, and only while the attempt still runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from graflow_async.clock import current_clock
from graflow_async.plan import RetryLater, RunPlan
from graflow_async.plan.facts import STEPPED, Failed, RetryAt, RetryCame, Succeeded, Wrote, apply
from graflow_async.plan.state import RETRY, RUNNING
from graflow_async.run.journal.facts import PLAIN, encode, plain_pack
from graflow_async.run.replies import fact_of
from graflow_async.wire.messages import TaskMessage, TaskReply

_STEPPED = encode(STEPPED)
_NONE: list[Any] = []  # a plain result's directives, packed (never changed)
COMPACT_EVERY = 20_000  # facts journaled between snapshots: a takeover reads at most about this many
Sends = list[tuple[Any, Sequence[TaskMessage]]]  # (route, messages): what a turn sends


class Takeover(NamedTuple):
    """What a run taken over from a driver that died starts from, besides its replayed
    plan: the replies that came while no driver lived, and the wall time each pending
    retry's backoff ends."""

    backlog: list[TaskReply]
    retry_at: dict[int, float]

    def retries(self, plan: RunPlan, now: float) -> list[RetryLater]:
        """The backoffs of the retries pending in `plan`, ending at their deadlines (`now`:
        the wall time; a retry whose deadline is unknown comes now)."""
        at = self.retry_at
        return [RetryLater(n, max(0.0, at.get(n, now) - now)) for n, s in enumerate(plan.status) if s == RETRY]


class FactWriter(Protocol):
    """Where a recording run writes the facts of each turn before acting on them."""

    @property
    def next_seq(self) -> int:
        """How many facts the journal holds."""
        ...

    async def write(self, records: list[bytes], sends: Sends, consumed: bytes | None = None) -> Sends:
        """Journal `records` (one turn's facts, encoded); it may send some of `sends` in the
        same round trip, after them: the rest, for the run to send. `consumed`: the run's
        reply stream (Redis) was read up to this entry id, and what it read is in the
        facts journaled so far: those entries may go."""
        ...

    async def compact(self, snapshot: bytes, upto: int) -> None:
        """Keep `snapshot` as the run's state after its first `upto` facts, which go."""
        ...

    @property
    def write_now(self) -> Callable[[list[bytes]], int] | None:
        """Journal records without awaiting anything (a file journal without fsync), keeping
        no reference to the list: how many facts the journal then holds. None: `write`
        must be awaited."""
        ...


class Recording:
    """The facts of the turn being taken, and where they go (see the module docstring)."""

    def __init__(self, writer: FactWriter, snapshot: Callable[[], bytes] | None = None) -> None:
        self.writer = writer
        self._write_now = writer.write_now
        self.snapshot = snapshot  # the run's state now, as a journal snapshot (None: never compact)
        self.compacted = writer.next_seq  # facts the last snapshot covers (or the journal held at the start)
        self._written = writer.next_seq  # facts the journal holds (what the last write said)
        self.retry_at: dict[int, float] = {}  # node -> when its pending retry's backoff ends (for a snapshot)
        self.turn: list[bytes] = []
        self.consumed: bytes | None = None  # the reply stream's entries read up to here (`Delivered`)
        self.writing: set[tuple[int, int, int]] = set()  # running attempts that wrote to the channel
        self.inherited: set[tuple[int, int, int]] = set()  # (node, cycle, attempt) running when the driver died
        self.taken: set[tuple[int, int, int, int]] = set()  # of those, the replies taken (and their epoch)

    def inherit(self, plan: RunPlan) -> None:
        """The run was taken over: what runs now ran under the driver that died."""
        self.inherited = {
            (node, plan.runs[node], plan.attempts[node]) for node, s in enumerate(plan.status) if s == RUNNING
        }

    def takes(self, r: TaskReply, epoch: int | None) -> bool:
        """Whether `r`, of an older epoch than the run's `epoch`, is the reply of an attempt
        this run inherited (then it is taken, once)."""
        key = (r.node, r.cycle, r.attempt)
        if epoch is None or r.epoch >= epoch or key not in self.inherited:
            return False
        self.inherited.discard(key)
        self.taken.add((*key, r.epoch))
        return True

    def taken_before(self, message: Any) -> bool:
        """Whether `message` is a reply this run already took (read again from its stream)."""
        return (
            type(message) is TaskReply and (message.node, message.cycle, message.attempt, message.epoch) in self.taken
        )

    def reply(self, plan: RunPlan, r: TaskReply, task_id: str) -> None:
        if self.writing:
            self.writing.discard((r.node, r.cycle, r.attempt))
        if r.ok and not r.directives:  # most replies: a plain result
            if type(r.value) in PLAIN:  # packed at once (a run's hot path: `encode_plain_result`, inline)
                try:
                    data = plain_pack(["ok", r.node, r.cycle, r.attempt, r.value, r.duration, _NONE])
                except (ValueError, OverflowError):  # an int msgpack cannot carry: failed below
                    pass
                else:
                    self.turn.append(data)
                    plan.task_succeeded(r.node, r.cycle, r.attempt, r.value, r.duration, ())
                    return
            fact: Any = Succeeded(r.node, r.cycle, r.attempt, r.value, r.duration, ())
        else:
            fact = fact_of(r)
        try:
            data = encode(fact)
        except TypeError as exc:  # a result the journal cannot keep fails its task
            assert type(fact) is Succeeded
            kind = type(fact.value).__name__
            error = TypeError(f"task {task_id!r} returned a {kind}, which a durable run cannot journal ({exc})")
            fact = Failed(r.node, r.cycle, r.attempt, error, r.duration, False)
            data = encode(fact)
        self.turn.append(data)
        if type(fact) is Succeeded:
            plan.task_succeeded(fact.node, fact.cycle, fact.attempt, fact.value, fact.duration, fact.directives)
        else:
            apply(plan, fact)

    def retry_armed(self, node: int, delay: float) -> None:
        """A retry backoff starts: when it ends, kept for a run taken over."""
        at = self.retry_at[node] = current_clock().wall() + delay
        self.turn.append(encode(RetryAt(node, at)))

    def retry_came(self, plan: RunPlan, node: int) -> None:
        self.retry_at.pop(node, None)
        self.turn.append(encode(RetryCame(node)))
        plan.retry_due(node)

    def encoded(self, op: str, key: Any, value: Any, by: tuple[int, int, int]) -> bytes:
        """A channel write attempt `by` is about to make, as its fact: TypeError (for the
        task) when the journal cannot keep its value; nothing is written then."""
        try:
            return encode(Wrote(op, key, value, by))
        except TypeError as exc:
            raise TypeError(
                f"channel key {key!r}: a {type(value).__name__} cannot be kept by a durable run ({exc})"
            ) from None

    def wrote(self, record: bytes, by: tuple[int, int, int]) -> None:
        """The write `record` (`encoded`) took effect."""
        self.turn.append(record)
        self.writing.add(by)

    def flush_now(self) -> bool:
        """`flush` without awaiting, when the writer writes at once and no snapshot is due
        after the turn (a file journal without fsync, nearly every turn): True when the
        turn is written; False: await `flush`."""
        write_now = self._write_now
        if write_now is None:
            return False
        turn = self.turn
        if self.snapshot is not None and self._written + len(turn) + 1 - self.compacted >= COMPACT_EVERY:
            return False
        turn.append(_STEPPED)
        self.consumed = None
        try:
            self._written = write_now(turn)
        finally:
            turn.clear()  # the same list for the next turn (the writer keeps no reference to it)
        return True

    async def flush(self, sends: Sends) -> Sends:
        """Write the turn's facts (closed by its step); what is left of `sends` to send."""
        self.turn.append(_STEPPED)
        records, self.turn = self.turn, []
        writer = self.writer
        consumed, self.consumed = self.consumed, None
        rest = await writer.write(records, sends, consumed)
        self._written = writer.next_seq
        due = self._written - self.compacted
        if self.snapshot is not None and due >= COMPACT_EVERY and (not self.writing or due >= 4 * COMPACT_EVERY):
            # between writes of running attempts, so that a takeover can still roll those back
            upto = writer.next_seq  # a turn's end: the plan is the state after every fact so far
            await writer.compact(self.snapshot(), upto)
            self.compacted = upto
        return rest
