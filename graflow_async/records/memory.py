"""Run records in this process's memory, for `MemoryFeedbackStore`.

Each record is kept encoded (as it would be on disk) beside the fields listings filter
and sort on, so nothing is shared with callers. At most `MAX_MEMORY_RUNS` are kept: past
that, the oldest ended runs are forgotten, a tenth of them at once.
"""

from __future__ import annotations

from typing import Any

from graflow_async.records.base import RUNNING, decode_record, encode_record, page, sort_key
from graflow_async.records.contract import RunRecords
from graflow_async.records.corrupt import Listing

MAX_MEMORY_RUNS = 10_000  # run records kept; the oldest ended ones are forgotten first
_INDEXED = ("run_id", "workflow", "status", "started_at")


class MemoryRunRecords(RunRecords):
    """Run records in a dict (nothing here can be corrupt: what is kept was checked)."""

    def __init__(self) -> None:
        # run id -> (the fields listings filter and sort on, the encoded record)
        self._runs: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._cancels: set[str] = set()

    async def save_run(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        checked = decode_record(data)
        run_id = checked["run_id"]
        self._runs.pop(run_id, None)
        self._runs[run_id] = ({k: checked[k] for k in _INDEXED}, data)
        if len(self._runs) > MAX_MEMORY_RUNS:
            self._forget_oldest()

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        entry = self._runs.get(run_id)
        return None if entry is None else self._decoded(run_id, entry[1])

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[Listing[dict[str, Any]], str | None]:
        indexes = (index for index, _ in self._runs.values())
        chosen, next_cursor = page(indexes, status=status, workflow=workflow, limit=limit, cursor=cursor)
        return Listing(self._decoded(r["run_id"], self._runs[r["run_id"]][1]) for r in chosen), next_cursor

    async def request_run_cancel(self, run_id: str) -> None:
        if run_id in self._runs:
            self._cancels.add(run_id)

    def _decoded(self, run_id: str, data: bytes) -> dict[str, Any]:
        return {**decode_record(data), "cancel_requested": run_id in self._cancels}

    def _forget_oldest(self) -> None:
        """Forget the oldest ended runs, a tenth of the records at once (not one per save)."""
        ended = sorted((index for index, _ in self._runs.values() if index["status"] != RUNNING), key=sort_key)
        for index in ended[: len(self._runs) - MAX_MEMORY_RUNS * 9 // 10]:
            del self._runs[index["run_id"]]
            self._cancels.discard(index["run_id"])
