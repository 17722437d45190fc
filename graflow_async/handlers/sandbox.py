"""What a task in a sandbox (a docker task) may ask of its context: one place decides,
the relay and the handler act. A pure function of facts (the operation, its size, the
time), tested without an event loop.

By default (``context="limited"``) a container may use the channel and
``request_feedback`` only; ``checkpoint()`` is refused, and so is anything it asks of
the run's graph (``next_task``, ``next_iteration``, ``cancel_workflow``,
``terminate_workflow``), which would let the container run the host's tasks with
arguments of its choosing. ``context="full"`` allows them all. Either way the attempt
is held to its `Quotas`; the first breach fails the task (`HandlerError` naming it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graflow_async.define.docker_options import Quotas
from graflow_async.exceptions import HandlerError
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate

LIMITED_OPS = frozenset(
    {
        "channel.get",
        "channel.set",
        "channel.delete",
        "channel.keys",
        "channel.append",
        "channel.incr",
        "channel.snapshot",
        "feedback",
        "stream",
    }
)
WRITES = frozenset({"channel.set", "channel.append", "stream"})  # bytes a task sends its run to keep
_OP_NAMES = {"checkpoint": "checkpoint()", "feedback": "request_feedback"}
_DIRECTIVE_NAMES = {
    AddTasks: "next_task",
    Iterate: "next_iteration",
    Cancel: "cancel_workflow",
    Terminate: "terminate_workflow",
}


@dataclass(slots=True)
class Sandbox:
    """The rules of one attempt, and what it has used of its quotas so far."""

    task_id: str
    full: bool = False  # ``context="full"``
    quotas: Quotas = field(default_factory=Quotas)
    connections: int = 0
    pending_feedback: int = 0
    channel_bytes: int = 0
    _tokens: float = -1.0  # the request budget (a token bucket of one second's worth)
    _last: float = 0.0

    def refusal(self, what: str) -> HandlerError:
        hint = "" if self.full else " (declare handler_kwargs={'context': 'full'} to allow it)"
        return HandlerError(f"task {self.task_id!r}: the sandbox does not allow {what}{hint}")

    def breach(self, quota: str, limit: float, option: str) -> HandlerError:
        return HandlerError(
            f"task {self.task_id!r} exceeded its sandbox quota of {limit:g} {quota} (handler_kwargs {option!r})"
        )

    def connect(self) -> HandlerError | None:
        """A new connection to the context socket: the error when it is one too many."""
        if self.connections >= self.quotas.connections:
            return self.breach("open context connections", self.quotas.connections, "max_connections")
        self.connections += 1
        return None

    def disconnect(self) -> None:
        self.connections = max(0, self.connections - 1)

    def admit(self, op: str, size: int, now: float) -> HandlerError | None:
        """A context request of `size` bytes at time `now`: the error that refuses it, if any."""
        if not self.full and op not in LIMITED_OPS:
            return self.refusal(_OP_NAMES.get(op, repr(op)))
        if not self._take_token(now):
            return self.breach(
                "context requests per second", self.quotas.requests_per_second, "max_requests_per_second"
            )
        if op in WRITES:
            self.channel_bytes += size
            if self.channel_bytes > self.quotas.channel_bytes:
                return self.breach(
                    "bytes written to the channel and streams", self.quotas.channel_bytes, "max_channel_bytes"
                )
        if op == "feedback":
            if self.pending_feedback >= self.quotas.pending_feedback:
                return self.breach("pending feedback requests", self.quotas.pending_feedback, "max_pending_feedback")
            self.pending_feedback += 1
        return None

    def feedback_answered(self) -> None:
        """A feedback request of this attempt was answered (it no longer counts as pending)."""
        self.pending_feedback = max(0, self.pending_feedback - 1)

    def directives_refusal(self, directives: tuple[object, ...]) -> HandlerError | None:
        """What the task asked of the run's graph, when the sandbox does not allow it."""
        if self.full or not directives:
            return None
        return self.refusal(_DIRECTIVE_NAMES.get(type(directives[0]), type(directives[0]).__name__))

    def _take_token(self, now: float) -> bool:
        rate = self.quotas.requests_per_second
        capacity = max(rate, 1.0)
        if self._tokens < 0:  # the first request: a full bucket
            self._tokens, self._last = capacity, now
        self._tokens = min(capacity, self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
