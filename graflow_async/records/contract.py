"""The run-records contract: where the web app keeps what it knows of each run so that it
outlives the app (SPEC section 8). A record is described in `records.base`.

Implementations: `MemoryRunRecords`, `FileRunRecords` (``.graflow/runs``) and
`RedisRunRecords`; each feedback store carries one (`FeedbackStore` is all three
contracts in one backend). `records.conformance.RunRecordsSuite` checks an
implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

from graflow_async.records.corrupt import Listing


class Closing:
    """``async with store:`` closes it (`aclose`); a store without connections or watchers
    has nothing to release."""

    async def aclose(self) -> None:
        """Release connections and watchers. Calling it again does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class RunRecords(Closing, ABC):
    """Run records by run id, listed newest first.

    What a backend itself fails with passes through: `TransportError` (Redis), `OSError`
    (files). Nothing read back is trusted: a stored record that fails the checks of
    `records.base` (not JSON, wrong types, too large, another run's, a Redis key of
    another type) is *corrupt*: listings leave it out and name it in `Listing.skipped`,
    reading it raises `CorruptRecordError`, and either logs it (once per version) by its
    id, file or key, never its content. Saving the run again replaces it.
    """

    @abstractmethod
    async def save_run(self, record: dict[str, Any]) -> None:
        """Store `record`, replacing the run's record (a corrupt one included).

        Its ``cancel_requested`` is ignored: only `request_run_cancel` sets it, so that an
        owner's save never loses a request to stop.

        Raises:
            RunRecordError: (a ValueError) the record is malformed or larger than
                `records.base.MAX_RECORD_BYTES`; nothing is stored.
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The checked record of `run_id` with its ``cancel_requested``, or None when
        there is none.

        Raises:
            CorruptRecordError: a record is stored but cannot be read (``kind`` "run record").
        """

    @abstractmethod
    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[Listing[dict[str, Any]], str | None]:
        """Records with `status` and `workflow` (when given), newest first (by
        ``started_at``, then ``run_id``), at most `limit` (capped at `MAX_LIMIT`), after
        `cursor`; and the cursor of the next page, or None on the last. Corrupt records
        met on the way are skipped and named in the listing's ``skipped``.

        Raises:
            RunRecordError: `cursor` is not one a listing made, or `limit` is below 1.
        """

    @abstractmethod
    async def request_run_cancel(self, run_id: str) -> None:
        """Mark run `run_id` as asked to stop (its record's ``cancel_requested``, kept
        apart from the record). Nothing happens when there is no record."""


class DelegatedRunRecords(RunRecords):
    """`RunRecords` carried out by another object, `run_records`: how a feedback store
    keeps run records in its backend."""

    run_records: RunRecords

    async def save_run(self, record: dict[str, Any]) -> None:
        await self.run_records.save_run(record)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return await self.run_records.get_run(run_id)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[Listing[dict[str, Any]], str | None]:
        return await self.run_records.list_runs(status=status, workflow=workflow, limit=limit, cursor=cursor)

    async def request_run_cancel(self, run_id: str) -> None:
        await self.run_records.request_run_cancel(run_id)


__all__ = ["Closing", "DelegatedRunRecords", "RunRecords"]
