"""Run records: the summary the web app keeps of each run it starts or resumes, stored
in the feedback store's backend so that it outlives the app (SPEC section 8).

A record is a JSON object::

    run_id          str (at most 200 characters)
    workflow        the key the run was started under (``POST /api/runs``'s "workflow")
    workflow_name   the workflow's own name (what a suspension records)
    status          running | completed | suspended | failed | cancelled
    started_at      epoch seconds; ended_at: epoch seconds or None; updated_at
    error           str or None (at most `MAX_ERROR` characters)
    results         task id -> result as JSON, or None when too large to keep
    checkpoint      where a suspended run waits, or None
    pending_feedback  feedback ids the run waits for
    tasks           task id -> {"state", "attempts", "started_at", "ended_at", "duration"}
    owner           {"instance", "host", "pid"} of the process driving it, or None
    lease_until     epoch seconds until which the owner vouches for a running run
    durable         a durable run (SPEC 10): its record is kept by whichever process drives it
    adoptable       a durable run on Redis, which a worker or `serve` takes over when its owner
                    is gone (it is then running with no owner, not interrupted)
    cancel_requested  True once ``POST /api/runs/{id}/cancel`` asked its owner to stop it

Records read back from disk or Redis are untrusted: `decode_record` bounds their size
and checks every field, and stores skip (and log) a record that fails. Listings are
newest first (by ``started_at``, then ``run_id``) and paged with an opaque cursor made
by `encode_cursor` from the last record of a page, so that any listing of records,
whatever its backend or filters, can continue after any record.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

RUNNING, COMPLETED, SUSPENDED, FAILED, CANCELLED = "running", "completed", "suspended", "failed", "cancelled"
INTERRUPTED = "interrupted"  # derived when reading: a running run whose owner is gone
STATUSES = (RUNNING, COMPLETED, SUSPENDED, FAILED, CANCELLED, INTERRUPTED)
ENDED = frozenset({COMPLETED, FAILED, CANCELLED, INTERRUPTED})
TASK_STATES = ("pending", "throttled", "running", "retrying", "waiting", "done", "failed", "cancelled")

MAX_RECORD_BYTES = 256 * 1024  # a stored record (JSON) larger than this is refused / skipped
MAX_RESULTS_BYTES = 64 * 1024  # results larger than this (as JSON) are not kept in the record
MAX_ERROR = 4096
MAX_ID = 200
MAX_TASKS = 500
MAX_PENDING = 1000
MAX_LIMIT = 500  # runs in one page at most
_MAX_CURSOR = 1024


class RunRecordError(ValueError):
    """A run record (or cursor) that is malformed, or too large to store."""


def _text(data: dict[str, Any], name: str, *, most: int = MAX_ID, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > most:
        raise RunRecordError(f"run record field {name!r} must be a string of 1-{most} characters")
    return value


def _time(data: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RunRecordError(f"run record field {name!r} must be a finite number")
    return float(value)


def _owner(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RunRecordError("run record field 'owner' must be an object")
    instance, host, pid = value.get("instance"), value.get("host"), value.get("pid")
    if not (isinstance(instance, str) and isinstance(host, str) and len(instance) <= MAX_ID and len(host) <= 1000):
        raise RunRecordError("run record owner needs string 'instance' and 'host'")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
        raise RunRecordError("run record owner needs a whole 'pid'")
    return {"instance": instance, "host": host, "pid": pid}


def _task(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("state") not in TASK_STATES:
        raise RunRecordError(f"a task summary needs a 'state' among {', '.join(TASK_STATES)}")
    attempts = value.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise RunRecordError("a task summary's 'attempts' must be a whole number")
    return {
        "state": value["state"],
        "attempts": attempts,
        **{k: _time(value, k, optional=True) for k in ("started_at", "ended_at", "duration")},
    }


def _tasks(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_TASKS:
        raise RunRecordError(f"run record field 'tasks' must be an object of at most {MAX_TASKS} tasks")
    checked = {}
    for task_id, summary in value.items():
        if not isinstance(task_id, str) or len(task_id) > MAX_ID:
            raise RunRecordError("task ids in a run record must be strings")
        checked[task_id] = _task(summary)
    return checked


def _pending(value: Any) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_PENDING
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID for i in value)
    ):
        raise RunRecordError(f"'pending_feedback' must be a list of at most {MAX_PENDING} feedback ids")
    return list(value)


def check_record(data: Any) -> dict[str, Any]:
    """A normalized copy of run record `data`; `RunRecordError` saying what is wrong."""
    if not isinstance(data, dict):
        raise RunRecordError(f"a run record must be an object, not {type(data).__name__}")
    status = data.get("status")
    if status not in STATUSES:
        raise RunRecordError(f"run record status must be one of {', '.join(STATUSES)}")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise RunRecordError("run record field 'error' must be a string or null")
    results = data.get("results")
    if results is not None and not isinstance(results, dict):
        raise RunRecordError("run record field 'results' must be an object or null")
    started_at = _time(data, "started_at")
    return {
        "run_id": _text(data, "run_id"),
        "workflow": _text(data, "workflow"),
        "workflow_name": _text(data, "workflow_name", optional=True) or _text(data, "workflow"),
        "status": status,
        "started_at": started_at,
        "ended_at": _time(data, "ended_at", optional=True),
        "updated_at": _time(data, "updated_at", optional=True) or started_at,
        "error": None if error is None else error[:MAX_ERROR],
        "results": results,
        "checkpoint": _text(data, "checkpoint", most=4096, optional=True),
        "pending_feedback": _pending(data.get("pending_feedback")),
        "tasks": _tasks(data.get("tasks")),
        "owner": _owner(data.get("owner")),
        "lease_until": _time(data, "lease_until", optional=True),
        "cancel_requested": data.get("cancel_requested") is True,
        "durable": data.get("durable") is True,
        "adoptable": data.get("adoptable") is True,
    }


def bounded_results(results: dict[str, Any]) -> dict[str, Any] | None:
    """`results` as JSON values (what the API shows), or None when larger than
    `MAX_RESULTS_BYTES` (the record then keeps no results)."""
    try:
        text = json.dumps(results, default=str, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > MAX_RESULTS_BYTES:
        return None
    if _SCALARS.issuperset(map(type, results.values())) and _TEXT.issuperset(map(type, results)):
        return dict(results)  # JSON values already, and none can change after (no copy to make)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_SCALARS = frozenset({str, int, float, bool, type(None)})
_TEXT = frozenset({str})


def encode_record(record: dict[str, Any]) -> bytes:
    """The stored form of `record` (checked); `RunRecordError` when it is malformed or
    larger than `MAX_RECORD_BYTES`."""
    data = json.dumps(check_record(record), ensure_ascii=False, allow_nan=False, default=str).encode()
    if len(data) > MAX_RECORD_BYTES:
        raise RunRecordError(f"run record of {record.get('run_id')!r} is larger than {MAX_RECORD_BYTES} bytes")
    return data


def decode_record(raw: bytes | str) -> dict[str, Any]:
    """A stored record, checked; `RunRecordError` for anything else."""
    if len(raw) > MAX_RECORD_BYTES:
        raise RunRecordError(f"run record larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RunRecordError(f"run record is not valid JSON: {str(exc)[:200]}") from None
    return check_record(data)


# --- ordering and paging ------------------------------------------------------------------
def sort_key(record: dict[str, Any]) -> tuple[float, str]:
    """Where a record sorts: listings are newest first, i.e. by this key descending."""
    return (record["started_at"], record["run_id"])


def encode_cursor(key: tuple[float, str]) -> str:
    """The opaque cursor of a listing that continues after the record with `key`."""
    raw = json.dumps([key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The key a cursor continues after; `RunRecordError` for one this module did not make."""
    bad = RunRecordError("invalid cursor (pass the next_cursor of a previous page)")
    if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], str)):
        raise bad
    when = data[0]
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise bad
    return float(when), data[1]


def check_limit(limit: Any) -> int:
    """`limit` as a page size: 1 to `MAX_LIMIT` (larger values are capped)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise RunRecordError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return min(limit, MAX_LIMIT)


def matches(record: dict[str, Any], status: str | None, workflow: str | None) -> bool:
    return (status is None or record["status"] == status) and (workflow is None or record["workflow"] == workflow)


def page(
    records: Iterable[dict[str, Any]],
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of `records` (any order) matching the filters, newest first, after
    `cursor`; and the cursor of the next page, or None when this is the last."""
    limit = check_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    found = sorted(
        (r for r in records if matches(r, status, workflow) and (after is None or sort_key(r) < after)),
        key=sort_key,
        reverse=True,
    )
    chosen = found[:limit]
    return chosen, encode_cursor(sort_key(chosen[-1])) if len(found) > limit else None


def ascending_page(
    items: list[Any], key: Callable[[Any], tuple[float, str]], *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Any], str | None]:
    """One page of `items` (sorted by `key`, ascending) after `cursor`, and the next
    page's cursor: the same cursors, for listings oldest first (feedback requests)."""
    limit = check_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    rest = [item for item in items if after is None or key(item) > after]
    chosen = rest[:limit]
    return chosen, encode_cursor(key(chosen[-1])) if len(rest) > limit else None
