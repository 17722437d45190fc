"""What a task sees of its run: `TaskContext`, and the run's `Channel` as a task uses it.

A task reaches its run only through messages: channel operations, checkpoints and
feedback are `ContextRequest`s to the run actor, answered by `ContextReply`s
(a mailbox hop in-process, a Redis stream between a worker and the run). What a task
asks of the run's graph (`next_task`, `next_iteration`, `cancel_workflow`,
`terminate_workflow`) is collected here and travels with its reply, so it takes
effect when the task returns. The context holds no reference to the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from graflow_async.define.tasks import Task
from graflow_async.exceptions import CycleLimitError
from graflow_async.feedback.hitl import FeedbackSuspended, question
from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse
from graflow_async.plan.channel import check_key
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.plan.graph import tasks_in
from graflow_async.plan.specs import component_spec
from graflow_async.wire.codec import check_value, packb
from graflow_async.wire.messages import MAX_CHUNK

if TYPE_CHECKING:
    from graflow_async.execute.context_port import Port
    from graflow_async.feedback.models import FeedbackType
    from graflow_async.wire.messages import TaskMessage


class Channel(ABC):
    """An async key-value store shared by the tasks of one run.

    Values must be msgpack-serializable (see `graflow_async.wire.codec`): tasks may run on
    workers, and a checkpoint saves the channel. `append` and `incr` are atomic across
    every task of the run.
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
    async def append(self, key: str, value: Any) -> int:
        """Append `value` to the list at `key` (created when absent); the new length."""

    @abstractmethod
    async def incr(self, key: str, amount: int | float = 1) -> int | float:
        """Add `amount` to the number at `key` (0 when absent); the new value."""

    @abstractmethod
    async def snapshot(self) -> dict[str, Any]:
        """Every key and value, as a plain dict."""


class RunChannel(Channel):
    """The run's channel, reached by messages to the run (the run applies them one at a time)."""

    __slots__ = ("_context",)

    def __init__(self, context: TaskContext) -> None:
        self._context = context

    async def get(self, key: str, default: Any = None) -> Any:
        check_key(key)
        found, value = await self._context._call("channel.get", {"key": key})
        return value if found else default

    async def set(self, key: str, value: Any) -> None:
        check_value(key, value)
        await self._context._call("channel.set", {"key": key, "value": value})

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._context._call("channel.delete", {"key": key})

    async def keys(self) -> list[str]:
        return list(await self._context._call("channel.keys", {}))

    async def append(self, key: str, value: Any) -> int:
        check_value(key, value)
        return int(await self._context._call("channel.append", {"key": key, "value": value}))

    async def incr(self, key: str, amount: int | float = 1) -> int | float:
        check_key(key)  # the run checks `amount` (and answers a TypeError)
        value: int | float = await self._context._call("channel.incr", {"key": key, "amount": amount})
        return value

    async def snapshot(self) -> dict[str, Any]:
        return dict(await self._context._call("channel.snapshot", {}))


class TaskContext:
    """Given to a task declared with ``inject_context=True`` as its first argument."""

    __slots__ = (
        "_channel",
        "_directives",
        "_feedback_calls",
        "_log",
        "_message",
        "_port",
        "attempt",
        "cycle_count",
        "max_cycles",
        "resumed_metadata",
        "run_id",
        "task_id",
    )

    def __init__(self, port: Port, message: TaskMessage) -> None:
        self._port = port
        self._message = message
        self.task_id = message.task_id
        self.run_id = message.run_id
        self.attempt = message.attempt
        self.cycle_count = message.cycle
        self.max_cycles = message.max_cycles
        self.resumed_metadata = message.resumed_metadata
        self._directives: list[Any] = []
        self._feedback_calls = 0
        self._channel: RunChannel | None = None
        self._log: Any = None

    async def _call(self, op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        return await self._port.call(self._message, op, args, timeout=timeout)

    @property
    def idempotency_key(self) -> str:
        """``"<run_id>/<task_id>/<cycle>"``: the same for every attempt of this run of the
        task, and for every takeover of a durable run (SPEC 10). Give it to what the task
        calls (a payment API's idempotency key) so a task run again does its side effect
        once."""
        return f"{self.run_id}/{self.task_id}/{self.cycle_count}"

    @property
    def directives(self) -> tuple[Any, ...]:
        """What the task asked of the run's graph, in call order (sent with its reply)."""
        return tuple(self._directives)

    @property
    def channel(self) -> Channel:
        """The run's shared key-value channel."""
        if self._channel is None:
            self._channel = RunChannel(self)
        return self._channel

    @property
    def log(self) -> Any:
        """A structlog logger bound to this run and task."""
        if self._log is None:
            from graflow_async.logs import library_logger

            self._log = library_logger().bind(run_id=self.run_id, task_id=self.task_id)
        return self._log

    # --- the run's course --------------------------------------------------------------------
    def cancel_workflow(self, reason: str = "cancelled") -> None:
        """When this task returns, stop the run: running siblings are cancelled and
        `run` raises `WorkflowCancelledError`."""
        self._directives.append(Cancel(str(reason)))

    def terminate_workflow(self, reason: str = "terminated") -> None:
        """When this task returns, end the run successfully: running siblings are
        cancelled and nothing after them runs."""
        self._directives.append(Terminate(str(reason)))

    def next_task(self, task: Any, *, goto: bool = False) -> str | list[str]:
        """Run `task` (a task, an instance, a chain or a parallel group) after this one
        returns; returns its id (a list for a chain or group). SPEC section 9.

        ``goto=False``: this task's successors wait for it too. ``goto=True``: it runs
        *instead of* this task's successors, which are skipped (a task already in the
        workflow runs again, and its successors after it: a loop back).
        """
        members = tasks_in(task)  # GraphError for anything that is not a task, chain or group
        component = component_spec(task) if self._port.remote else task
        self._directives.append(AddTasks(component, bool(goto)))
        return task.id if isinstance(task, Task) else [t.id for t in members]

    def next_iteration(self, data: Any = None) -> None:
        """Run this task again after it returns, with `data` as its ``data`` parameter;
        its successors run once, after the last cycle. `CycleLimitError` when no cycle
        is left (see `max_cycles` and `can_iterate`)."""
        if not self.can_iterate():
            raise CycleLimitError(self.task_id, self.max_cycles, self.cycle_count)
        if self._port.remote:
            check_value("data", data)
        self._directives.append(Iterate(data))

    def can_iterate(self) -> bool:
        """Whether `next_iteration` may be called (a cycle is left)."""
        return self.cycle_count < self.max_cycles

    # --- checkpoints and people ------------------------------------------------------------------
    async def stream(self, chunk: Any) -> None:
        """Append `chunk` (any msgpack-serializable value, at most 1 MiB packed) to the
        run's stream (SPEC 12): readers of ``run_stream`` see it at once, in order, with
        this task's id and attempt. TypeError or ValueError for a chunk that cannot be
        kept."""
        check_chunk(chunk)
        await self._port.stream(self._message, chunk)

    def set_attributes(self, **attributes: Any) -> None:
        """Set `attributes` on this attempt's span (OpenTelemetry; nothing when not
        tracing), e.g. ``gen_ai.request.model`` and ``gen_ai.usage.input_tokens`` of an
        LLM call: keys with dots are given as ``**{"gen_ai.request.model": "gpt-4o"}``."""
        from graflow_async.execute.tracing import set_attributes

        set_attributes(attributes)

    async def checkpoint(self, path: str | None = None, metadata: dict[str, Any] | None = None) -> str:
        """Save the run now; returns the checkpoint's location (SPEC section 6). The run
        writes it (on its own host, for a task on a worker)."""
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        if path is not None and not isinstance(path, str):
            path = str(path)
        if metadata:
            check_value("metadata", metadata)
        return str(await self._call("checkpoint", {"path": path, "metadata": dict(metadata or {})}))

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
        the run id, the task id, the cycle and the call's order) or waits again.
        """
        self._feedback_calls += 1
        args = question(feedback_type, prompt, options, timeout, metadata, notification_config)
        answer = await self._call("feedback", {**args, "index": self._feedback_calls}, timeout=args["timeout"])
        if answer["status"] == "answered":
            return FeedbackResponse.from_dict(answer["response"])
        raise FeedbackSuspended(FeedbackRequest.from_dict(answer["request"]))

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
        return f"<TaskContext run={self.run_id} task={self.task_id} attempt={self.attempt} cycle={self.cycle_count}>"


async def relay_call(context: TaskContext, op: str, args: dict[str, Any], timeout: float | None) -> Any:
    """Pass on a context operation that a task running in another process sent to its
    handler (see `graflow_async.handlers.relay`)."""
    if op == "stream":
        await context.stream(args.get("data"))
        return None
    return await context._call(op, args, timeout)


_PLAIN = frozenset({str, bytes, int, float, bool, type(None)})


def check_chunk(chunk: Any) -> None:
    """TypeError for a chunk msgpack cannot carry, ValueError for one past `MAX_CHUNK`."""
    kind = type(chunk)
    if kind in _PLAIN and (kind not in (str, bytes) or len(chunk) <= MAX_CHUNK // 4):
        if kind is not int or -(2**63) <= chunk < 2**64:
            return  # the usual chunk: a token, a line, a number
    try:
        size = len(packb(chunk))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise TypeError(f"a streamed chunk of type {kind.__name__} cannot be kept ({exc})") from None
    if size > MAX_CHUNK:
        raise ValueError(f"a streamed chunk of {size} bytes is larger than the {MAX_CHUNK} allowed")


def adopt_directives(context: TaskContext, directives: tuple[Any, ...]) -> None:
    """Take on what a task in another process asked of the run's graph, as if asked here."""
    context._directives.extend(directives)


__all__ = ["Channel", "RunChannel", "TaskContext"]
