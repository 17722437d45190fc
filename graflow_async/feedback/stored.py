"""What the stores keep of a feedback request, its answer and a run's suspension, checked
on the way in and again on the way out: nothing read back from a file or Redis (or
written there by someone else) is trusted.

A request is stored as the JSON of `FeedbackRequest.to_dict` (at most
`MAX_REQUEST_BYTES`), an answer as that of `FeedbackResponse.to_dict` (at most
`MAX_RESPONSE_BYTES`), with the request's status beside them. Reading one back checks
every field's type and bound, that the ids are the ones asked for, and that the status
fits the answer (answered with one, pending or cancelled without); anything else raises
`FeedbackCorruptError` saying what is wrong and never what is there.
"""

from __future__ import annotations

import json
import math
from typing import Any

from graflow_async.exceptions import CorruptRecordError, FeedbackCorruptError, FeedbackValidationError
from graflow_async.feedback.models import (
    ANSWERED,
    CANCELLED,
    MAX_OPTIONS,
    MAX_PROMPT,
    PENDING,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackType,
)

MAX_ID = 1024  # characters of a feedback, run or task id
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_RECORD_BYTES = MAX_REQUEST_BYTES + MAX_RESPONSE_BYTES + 64 * 1024  # a whole stored record, any backend
MAX_SUSPENSION_BYTES = 64 * 1024
STATUSES = (PENDING, ANSWERED, CANCELLED)
_TYPES = frozenset(t.value for t in FeedbackType)


class SuspensionError(ValueError):
    """A suspension record that cannot be stored (see `check_suspension`)."""


class Bad(ValueError):
    """What is wrong with a stored value (its reason only, never the value)."""


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_request(request: FeedbackRequest) -> str:
    """The stored form of `request` (JSON text), which reads back as it is (`decode`);
    `FeedbackValidationError` for one that is not JSON, too large, or would not read back."""
    try:
        text = dumps(request.to_dict())
    except (TypeError, ValueError, RecursionError) as exc:
        raise FeedbackValidationError(f"the request is not JSON-serializable: {exc}", field="metadata") from None
    if len(text.encode()) > MAX_REQUEST_BYTES:
        raise FeedbackValidationError(f"the request is larger than {MAX_REQUEST_BYTES} bytes as JSON", field="metadata")
    try:
        _request(json.loads(text), PENDING)
    except Bad as exc:
        raise FeedbackValidationError(f"the request cannot be stored: {exc}") from None
    return text


def encode_response(answer: FeedbackResponse) -> str:
    """The stored form of `answer` (JSON text); `FeedbackValidationError` when it is too
    large or would not read back."""
    try:
        text = dumps(answer.to_dict())
    except (TypeError, ValueError, RecursionError) as exc:
        raise FeedbackValidationError(f"the answer is not JSON-serializable: {exc}") from None
    if len(text.encode()) > MAX_RESPONSE_BYTES:
        raise FeedbackValidationError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes as JSON")
    try:
        _response(json.loads(text), answer.feedback_id)
    except Bad as exc:
        raise FeedbackValidationError(f"the answer cannot be stored: {exc}") from None
    return text


def loads(raw: bytes | str, most: int) -> Any:
    """JSON text read back (at most `most` bytes); `Bad` otherwise."""
    if len(raw) > most:
        raise Bad(f"larger than {most} bytes ({len(raw)})")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Bad("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Bad(f"not JSON ({exc.msg} at character {exc.pos})") from None
    except (ValueError, RecursionError):
        raise Bad("not JSON (nested too deep, or a number out of range)") from None


def decode(
    request: Any, response: Any, status: Any, label: str, feedback_id: str | None = None
) -> tuple[FeedbackRequest, FeedbackResponse | None]:
    """A stored request and answer (parsed JSON values), checked; `FeedbackCorruptError`
    naming `label` (the id, file or key) otherwise. With `feedback_id`, the record must
    be that request's."""
    try:
        checked = _request(request, status)
        if feedback_id is not None and checked.feedback_id != feedback_id:
            raise Bad("it is the record of another feedback id")
        answer = None if response is None else _response(response, checked.feedback_id)
        if (answer is not None) != (checked.status == ANSWERED):
            raise Bad(f"a {checked.status} request {'with' if answer is not None else 'without'} an answer")
    except Bad as exc:
        raise FeedbackCorruptError(label, str(exc)) from None
    return checked, answer


def decode_text(
    request: bytes | str | None, response: bytes | str | None, status: Any, label: str, feedback_id: str | None = None
) -> tuple[FeedbackRequest, FeedbackResponse | None]:
    """`decode` of the JSON texts of a request and its answer (as kept in Redis or memory)."""
    try:
        if request is None:
            raise Bad("it has no request")
        parsed = loads(request, MAX_REQUEST_BYTES)
        answer = None if response is None else loads(response, MAX_RESPONSE_BYTES)
        if isinstance(status, bytes):
            status = status.decode("utf-8", "replace")
    except Bad as exc:
        raise FeedbackCorruptError(label, str(exc)) from None
    return decode(parsed, answer, status, label, feedback_id)


def _text(data: dict[str, Any], name: str, most: int, *, optional: bool = False, empty: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > most or (not value and not empty):
        raise Bad(f"its {name!r} is not a string of {0 if empty else 1}-{most} characters")
    return value


def _number(data: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Bad(f"its {name!r} is not a finite number >= 0")
    return float(value)


def _strings(value: Any, name: str, most: int) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > most or not all(isinstance(v, str) for v in value):
        raise Bad(f"its {name!r} is not a list of at most {most} strings")
    return value


def _object(value: Any, name: str, *, optional: bool) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise Bad(f"its {name!r} is not a JSON object")
    return value


def _request(data: Any, status: Any) -> FeedbackRequest:
    if not isinstance(data, dict):
        raise Bad("its request is not a JSON object")
    if status not in STATUSES:
        raise Bad(f"its status is not one of {', '.join(STATUSES)}")
    kind = data.get("feedback_type")
    if kind not in _TYPES:
        raise Bad("its 'feedback_type' is not a feedback type")
    return FeedbackRequest(
        feedback_id=_text(data, "feedback_id", MAX_ID),
        run_id=_text(data, "run_id", MAX_ID),
        task_id=_text(data, "task_id", MAX_ID),
        feedback_type=FeedbackType(kind),
        prompt=_text(data, "prompt", MAX_PROMPT, empty=True),
        options=_strings(data.get("options"), "options", MAX_OPTIONS),
        metadata=_object(data.get("metadata", {}), "metadata", optional=False) or {},
        timeout=_number(data, "timeout", optional=True),
        created_at=_number(data, "created_at"),
        status=status,
        notification_config=_object(data.get("notification_config"), "notification_config", optional=True),
    )


def _response(data: Any, feedback_id: str) -> FeedbackResponse:
    if not isinstance(data, dict):
        raise Bad("its answer is not a JSON object")
    if data.get("feedback_id") != feedback_id:
        raise Bad("its answer is of another feedback id")
    approved = data.get("approved")
    if approved is not None and not isinstance(approved, bool):
        raise Bad("its answer's 'approved' is not a boolean")
    return FeedbackResponse(
        feedback_id=feedback_id,
        approved=approved,
        **{n: _text(data, n, MAX_RESPONSE_BYTES, optional=True, empty=True) for n in ("reason", "text", "selected")},
        selected_multiple=_strings(data.get("selected_multiple"), "selected_multiple", MAX_RESPONSE_BYTES),
        custom_data=_object(data.get("custom_data"), "custom_data", optional=True),
        responded_by=_text(data, "responded_by", MAX_RESPONSE_BYTES, optional=True, empty=True),
        responded_at=_number(data, "responded_at"),
    )


# --- suspensions ---------------------------------------------------------------------------------
def check_suspension(record: Any) -> str:
    """The stored form (JSON text) of suspension `record`; `SuspensionError` unless it is
    a JSON object of string keys whose ``checkpoint`` and ``workflow``, when there, are
    strings, of at most `MAX_SUSPENSION_BYTES`."""
    try:
        return _suspension(record)
    except Bad as exc:
        raise SuspensionError(f"a suspension record {exc}") from None


def decode_suspension(raw: bytes | str, label: str) -> dict[str, Any]:
    """A stored suspension record, checked; `CorruptRecordError` naming `label` otherwise."""
    try:
        record = loads(raw, MAX_SUSPENSION_BYTES)
        _suspension(record)
    except Bad as exc:
        raise CorruptRecordError("suspension", label, str(exc)) from None
    return dict(record)


def _suspension(record: Any) -> str:
    if not isinstance(record, dict) or not all(isinstance(k, str) for k in record):
        raise Bad("is not a JSON object with string keys")
    for name in ("checkpoint", "workflow"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise Bad(f"has a {name!r} that is not a string")
    try:
        text = dumps(record)
    except (TypeError, ValueError, RecursionError):
        raise Bad("is not JSON-serializable") from None
    if len(text.encode()) > MAX_SUSPENSION_BYTES:
        raise Bad(f"is larger than {MAX_SUSPENSION_BYTES} bytes")
    return text
