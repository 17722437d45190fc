"""Human-in-the-loop records: what is asked (`FeedbackRequest`) and what was answered
(`FeedbackResponse`), with validation of an answer against the question's type."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from graflow_async.exceptions import FeedbackValidationError


class FeedbackType(enum.StrEnum):
    """The kinds of question a task can ask."""

    APPROVAL = "approval"
    TEXT = "text"
    SELECTION = "selection"
    MULTI_SELECTION = "multi_selection"
    CUSTOM = "custom"

    @classmethod
    def resolve(cls, value: FeedbackType | str) -> FeedbackType:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise FeedbackValidationError(
                f"unknown feedback type {value!r} (use one of: {known})", field="feedback_type"
            ) from None


PENDING, ANSWERED, CANCELLED = "pending", "answered", "cancelled"
MAX_PROMPT = 64 * 1024  # characters of a question
MAX_OPTIONS = 1000  # options of a selection


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """A question waiting for (or given) an answer. The REST JSON uses the same names.

    Frozen: a store replaces its record (`dataclasses.replace`) when the status changes,
    so a request once handed out keeps the status it had then. `options` and `metadata`
    stay a list and a dict; a store shares neither with its callers (it serializes
    or copies them).
    """

    feedback_id: str
    run_id: str
    task_id: str
    feedback_type: FeedbackType
    prompt: str
    options: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    created_at: float = field(default_factory=time.time)
    status: str = PENDING
    notification_config: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["feedback_type"] = self.feedback_type.value
        data.pop("notification_config")  # may hold webhook URLs and headers: not for clients
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackRequest:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["feedback_type"] = FeedbackType.resolve(values["feedback_type"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class FeedbackResponse:
    """An answer. Which fields matter depends on the request's type."""

    feedback_id: str
    approved: bool | None = None
    reason: str | None = None
    text: str | None = None
    selected: str | None = None
    selected_multiple: list[str] | None = None
    custom_data: dict[str, Any] | None = None
    responded_by: str | None = None
    responded_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackResponse:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_ANSWER_FIELDS = ("approved", "reason", "text", "selected", "selected_multiple", "custom_data", "responded_by")


def validate_response(request: FeedbackRequest, answer: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
    """Check `answer` fits `request`; return it as a `FeedbackResponse`.

    Raises `FeedbackValidationError` whose `field` names the offending field.
    """
    if isinstance(answer, FeedbackResponse):
        data = {name: getattr(answer, name) for name in _ANSWER_FIELDS}
    elif isinstance(answer, dict):
        unknown = sorted(set(answer) - set(_ANSWER_FIELDS) - {"feedback_id", "responded_at"})
        if unknown:
            raise FeedbackValidationError(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        data = {name: answer.get(name) for name in _ANSWER_FIELDS}
    else:
        raise FeedbackValidationError(f"a response must be an object, got {type(answer).__name__}")
    for name in ("reason", "text", "responded_by"):
        if data[name] is not None and not isinstance(data[name], str):
            raise FeedbackValidationError(f"{name} must be a string", field=name)
    kind = request.feedback_type
    options = request.options or []
    if kind is FeedbackType.APPROVAL:
        if not isinstance(data["approved"], bool):
            raise FeedbackValidationError("approval needs a boolean 'approved'", field="approved")
    elif kind is FeedbackType.TEXT:
        if not isinstance(data["text"], str):
            raise FeedbackValidationError("text feedback needs a string 'text'", field="text")
    elif kind is FeedbackType.SELECTION:
        if data["selected"] not in options or not isinstance(data["selected"], str):
            raise FeedbackValidationError(f"'selected' must be one of the options {options}", field="selected")
    elif kind is FeedbackType.MULTI_SELECTION:
        chosen = data["selected_multiple"]
        if not isinstance(chosen, list) or not all(isinstance(c, str) and c in options for c in chosen):
            raise FeedbackValidationError(
                f"'selected_multiple' must be a list drawn from the options {options}",
                field="selected_multiple",
            )
    elif kind is FeedbackType.CUSTOM and not isinstance(data["custom_data"], dict):
        raise FeedbackValidationError("custom feedback needs a JSON object 'custom_data'", field="custom_data")
    return FeedbackResponse(feedback_id=request.feedback_id, **data)
