"""What a task sees of its run: `TaskContext` and the run's shared `Channel`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog

    from .feedback.models import FeedbackResponse, FeedbackType
    from .run_state import RunState


class Channel(ABC):
    """An async key-value store shared by the tasks of one run.

    Values must be msgpack-serializable (see `graflow_async.codec`): a channel may
    live in Redis, and a checkpoint saves it.
    """

    @abstractmethod
    async def get(self, key: str, default: Any = None) -> Any: ...

    @abstractmethod
    async def set(self, key: str, value: Any) -> None:
        """Store `value`; TypeError naming the key when it cannot be serialized."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def keys(self) -> list[str]: ...

    @abstractmethod
    async def snapshot(self) -> dict[str, Any]:
        """Every key and value, as a plain dict."""


class MemoryChannel(Channel):
    """The channel of a local run: a dict, checked for serializability on write."""

    __slots__ = ("data",)

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = {}
        for key, value in (initial or {}).items():
            _check_value(key, value)
            self.data[key] = value

    async def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        _check_value(key, value)
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def keys(self) -> list[str]:
        return list(self.data)

    async def snapshot(self) -> dict[str, Any]:
        return dict(self.data)


def _check_value(key: Any, value: Any) -> None:
    from .codec import packb

    if not isinstance(key, str):
        raise TypeError(f"channel keys are strings, got {key!r}")
    try:
        packb(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"channel key {key!r}: a value of type {type(value).__name__} cannot be "
            f"serialized ({exc})"
        ) from exc


class TaskContext:
    """Given to a task declared with ``inject_context=True`` as its first argument."""

    __slots__ = (
        "_control", "_feedback_calls", "_log", "_state", "attempt", "resumed_metadata", "run_id", "task_id",
    )

    def __init__(
        self, state: RunState, task_id: str, attempt: int,
        resumed_metadata: dict[str, Any] | None = None,
    ) -> None:
        self._state = state
        self.task_id = task_id
        self.run_id = state.run_id
        self.attempt = attempt
        self.resumed_metadata = resumed_metadata
        self._control: tuple[str, str] | None = None
        self._feedback_calls = 0
        self._log: structlog.typing.FilteringBoundLogger | None = None

    @property
    def channel(self) -> Channel:
        """The run's shared key-value channel."""
        return self._state.channel

    @property
    def log(self) -> Any:
        """A structlog logger bound to this run and task."""
        if self._log is None:
            self._log = self._state.log.bind(task_id=self.task_id)
        return self._log

    def cancel_workflow(self, reason: str = "cancelled") -> None:
        """When this task returns, stop the run: running siblings are cancelled and
        `run` raises `WorkflowCancelledError`."""
        self._control = ("cancel", str(reason))

    def terminate_workflow(self, reason: str = "terminated") -> None:
        """When this task returns, end the run successfully: running siblings are
        cancelled and nothing after them runs."""
        self._control = ("terminate", str(reason))

    async def checkpoint(
        self, path: str | None = None, metadata: dict[str, Any] | None = None
    ) -> str:
        """Save the run now; returns the checkpoint's location (SPEC section 6)."""
        return await self._state.save_checkpoint(self, path, metadata)

    async def request_feedback(
        self,
        feedback_type: FeedbackType | str,
        prompt: str,
        *,
        options: list[str] | None = None,
        timeout: float = 180.0,
        metadata: dict[str, Any] | None = None,
        notification_config: dict[str, Any] | None = None,
    ) -> FeedbackResponse:
        """Ask a person and return the answer (SPEC section 5).

        Within `timeout` seconds the answer is simply returned. After it, the run
        suspends: this raises (a `FeedbackTimeoutError`), the run writes a checkpoint
        and `run` returns ``status="suspended"``; resuming runs this task again, and
        the same call returns the stored answer at once (its feedback id is derived from
        the run id, the task id and the call's order) or waits again.
        """
        from .feedback.hitl import request_feedback

        self._feedback_calls += 1
        return await request_feedback(
            self._state, self.task_id, self._feedback_calls, feedback_type, prompt, options=options,
            timeout=timeout, metadata=metadata, notification_config=notification_config,
        )

    async def request_approval(self, prompt: str, **kwargs: Any) -> bool:
        """Ask for approval; True when approved."""
        return bool((await self.request_feedback("approval", prompt, **kwargs)).approved)

    async def request_text(self, prompt: str, **kwargs: Any) -> str:
        """Ask for free text; the text."""
        return (await self.request_feedback("text", prompt, **kwargs)).text or ""

    async def request_selection(self, prompt: str, options: list[str], **kwargs: Any) -> str:
        """Ask to pick one of `options`; the one picked."""
        answer = await self.request_feedback("selection", prompt, options=options, **kwargs)
        return answer.selected or ""

    def __repr__(self) -> str:
        return f"<TaskContext run={self.run_id} task={self.task_id} attempt={self.attempt}>"
