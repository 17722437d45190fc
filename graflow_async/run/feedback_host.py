"""The run's side of its tasks' questions: a request stored in the run's feedback store,
announced, waited for on the run's clock, and answered to the task (with the response,
or with "timeout", on which the task raises `FeedbackSuspended` and the run suspends)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from graflow_async.clock import Clock, within
from graflow_async.exceptions import FeedbackCancelledError, FeedbackValidationError
from graflow_async.feedback.contracts import HitlStore
from graflow_async.feedback.hitl import feedback_id, open_feedback_store, question
from graflow_async.feedback.models import ANSWERED, CANCELLED, FeedbackRequest, FeedbackType
from graflow_async.feedback.notify_config import respond_url


class Turns(Protocol):
    """The run actor, as the helpers that work for it see it."""

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the actor's next turn (where events are emitted and replies sent)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Start `coro` as a child of the run."""

    def emit(self, kind: Any, task_id: str | None = None, **data: Any) -> None:
        """Report an event of the run."""


class FeedbackHost:
    """The run's side of its tasks' questions, for the run actor `turns` (events are
    emitted in its turn; notifications are its children). The store (`spec`: a
    `FeedbackStore` or what `open_feedback_store` takes) is closed with the run when the
    run opened it or `owned`."""

    def __init__(self, run_id: str, spec: Any, clock: Clock, turns: Turns, *, owned: bool = False) -> None:
        self.run_id = run_id
        self._spec = spec
        self._owned = owned or not isinstance(spec, HitlStore)  # closed when the run ends
        self._store: HitlStore | None = None
        self.clock = clock
        self.post = turns.post
        self.spawn = turns.spawn
        self.emit = turns.emit
        #: node -> the request whose wait timed out (the run's pending feedback if it suspends)
        self.timed_out: dict[int, FeedbackRequest] = {}
        #: a durable run taken over: a question asked again keeps the deadline it was first given
        self.keep_deadlines = False

    def store(self) -> HitlStore:
        """The run's feedback store (its requests and suspensions), opened on first use."""
        if self._store is None:
            self._store = open_feedback_store(self._spec)
        return self._store

    @property
    def opened(self) -> HitlStore | None:
        return self._store

    async def aclose(self) -> None:
        store, self._store = self._store, None
        if store is not None and self._owned:
            await store.aclose()

    async def serve(self, node: int, task_id: str, cycle: int, args: dict[str, Any]) -> dict[str, Any]:
        """Store the question, wait for its answer; the reply for the asking task."""
        fields = question(
            args.get("feedback_type"),
            args.get("prompt"),
            args.get("options"),
            args.get("timeout"),
            args.get("metadata"),
            args.get("notification_config"),
        )
        index = args.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise FeedbackValidationError("index must be a positive whole number", field="index")
        fresh = FeedbackRequest(
            feedback_id(self.run_id, task_id, index, cycle),
            self.run_id,
            task_id,
            FeedbackType(fields["feedback_type"]),
            fields["prompt"],
            fields["options"],
            fields["metadata"],
            fields["timeout"],
            notification_config=fields["notification_config"],
        )
        store = self.store()
        request = await store.create(fresh)
        if request.status == ANSWERED:
            _, answer = await store.get(request.feedback_id)
            assert answer is not None
            return {"status": "answered", "response": answer.to_dict()}
        if request.status == CANCELLED:
            raise FeedbackCancelledError(f"feedback request {request.feedback_id!r} was cancelled")
        if request.created_at == fresh.created_at:  # asked now, not found from an earlier run
            self.post(
                lambda: self.emit(
                    "feedback_requested",
                    task_id,
                    feedback_id=request.feedback_id,
                    feedback_type=request.feedback_type.value,
                    prompt=request.prompt,
                )
            )
            if fresh.notification_config:  # not stored: it may hold webhook URLs and headers
                from graflow_async.feedback.notify import notify

                self.spawn(notify(request, fresh.notification_config, respond_url=respond_url(request.feedback_id)))
        timeout = request.timeout
        if timeout is not None and self.keep_deadlines and request.created_at != fresh.created_at:
            timeout = max(0.0, request.created_at + timeout - fresh.created_at)  # asked before the takeover
        try:
            answer = await within(self.clock, store.wait(request.feedback_id), timeout)
        except TimeoutError:
            self.timed_out[node] = request
            return {"status": "timeout", "request": request.to_dict()}
        self.post(lambda: self.emit("feedback_answered", task_id, feedback_id=request.feedback_id))
        return {"status": "answered", "response": answer.to_dict()}
