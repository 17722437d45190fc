"""The `Journal` seam: where a durable run keeps the facts its plan consumed (SPEC 10).

One journal per run. Its owner (the driver) claims it, and gets an epoch; every append
and compaction is fenced by that epoch: once another process has claimed the run (the
owner's lease lapsed), the old owner's writes raise `Fenced` and change nothing. Whoever
takes the run over reads it back: the latest snapshot (the checkpoint document of
SPEC 6) and the facts after it, in order. The facts are opaque bytes here.

Two implementations: `FileJournal` (an append-only file beside the run's checkpoints)
and `RedisJournal` (a stream on the run's Redis server). `conformance.JournalSuite`
holds both to this contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from graflow_async.run.journal.frames import JournalError


class Fenced(JournalError):
    """A write of an owner that lost the run: another epoch holds it now."""


@dataclass(frozen=True, slots=True)
class Replay:
    """What a journal holds: `snapshot` (None: none yet) covering facts ``[0, upto)``, then
    `facts` ``upto, upto + 1, ...``; `epoch` the newest owner's."""

    snapshot: bytes | None
    upto: int
    facts: list[bytes] = field(default_factory=list)
    epoch: int = 0

    @property
    def next_seq(self) -> int:
        return self.upto + len(self.facts)


class Journal(ABC):
    """The journal of run `run_id` (see the module docstring)."""

    run_id: str

    @abstractmethod
    async def claim(self, owner: str, lease: float) -> int | None:
        """Become the run's owner for `lease` seconds: the new epoch; None while another
        owner's lease is live (of two claims at once, one wins)."""

    @abstractmethod
    async def renew(self, epoch: int, lease: float) -> bool:
        """Extend the lease of `epoch`; False once another epoch holds the run."""

    @abstractmethod
    async def append(self, epoch: int, facts: Sequence[bytes]) -> int:
        """Append `facts` in one write; the sequence after them. `Fenced` when `epoch` no
        longer holds the run (nothing is written)."""

    @abstractmethod
    async def read(self) -> Replay:
        """The snapshot and the facts after it. `JournalError` naming the run when the
        journal does not check (a torn last write of a file is not an error: it is left out)."""

    @abstractmethod
    async def compact(self, epoch: int, snapshot: bytes, upto: int) -> None:
        """Keep `snapshot` as the state after facts ``[0, upto)`` and let those facts go,
        so that reading the run back costs about the same however long it ran. `Fenced`
        as `append`."""

    @abstractmethod
    async def release(self, epoch: int) -> None:
        """The owner of `epoch` lets the run go (it ended): its lease is dropped."""

    async def aclose(self) -> None:
        """Release what the journal holds open."""
