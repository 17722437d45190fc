"""Every exception graflow-async raises, in one place.

    GraflowError
    ├── GraphError                    bad workflow definition (duplicate id, cycle, non-task)
    ├── TaskFailedError               a task raised and had no retries left (.task_id, .cause)
    │   ├── RetryLimitExceededError   ... after retries (.attempts, .max_retries, .last_error)
    │   ├── TaskTimeoutError          ... by running past its `timeout`
    │   ├── CycleLimitError           ... it, or the task its goto named (.target), had no run left
    │   └── RemoteTaskError           ... on a worker; carries type name, message, traceback
    ├── ParallelGroupError            a group's policy failed it (.group_id, .failed_tasks, ...)
    ├── WorkflowCancelledError        a task called context.cancel_workflow(reason)
    ├── CheckpointError               a checkpoint cannot be written, read or resumed
    │   ├── RunAlreadyRunningError    resume refused: another process runs the run (.run_id)
    │   └── RunCompletedError         resume refused: the run has completed since (.run_id)
    ├── FeedbackError                 human-in-the-loop request problems
    │   ├── FeedbackTimeoutError      no answer within the timeout
    │   ├── FeedbackCancelledError    the request was cancelled
    │   ├── FeedbackNotFoundError     unknown feedback id
    │   ├── FeedbackAlreadyAnsweredError
    │   ├── FeedbackValidationError   a response that does not fit the type (.field)
    │   └── FeedbackCorruptError      its stored record cannot be read (also a CorruptRecordError)
    ├── CorruptRecordError            a stored record (request, suspension, run record) is
    │                                 unreadable: not JSON, wrong types, too large... (.kind, .record_id)
    ├── TransportError                a transport (Redis, ...) cannot be reached or used
    └── HandlerError                  unknown handler name, or a handler failed to start

Errors carry their facts as attributes. A task's own exception is always the
`__cause__` of the error that reports it; foreign errors (redis, botocore, aiodocker)
are mapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class GraflowError(Exception):
    """Base class of every graflow-async error."""


class GraphError(GraflowError):
    """The workflow definition is invalid; raised when the workflow is built."""


class TaskFailedError(GraflowError):
    """Task `task_id` raised `cause` and has no retries left."""

    def __init__(self, task_id: str, cause: BaseException | None, message: str | None = None):
        self.task_id = task_id
        self.cause = cause
        if message is None:
            message = f"task {task_id!r} failed: {_describe(cause)}"
        super().__init__(message)
        self.__cause__ = cause

    def __reduce__(self):  # keep attributes when copied/pickled by third-party tools
        return (type(self), (self.task_id, self.cause, str(self)))


class RetryLimitExceededError(TaskFailedError):
    """Task `task_id` failed on every one of its `attempts` (= max_retries + 1)."""

    def __init__(self, task_id: str, last_error: BaseException, attempts: int, max_retries: int):
        self.attempts = attempts
        self.max_retries = max_retries
        self.last_error = last_error
        super().__init__(
            task_id,
            last_error,
            f"task {task_id!r} failed after {attempts} attempts (max_retries={max_retries}): {_describe(last_error)}",
        )

    def __reduce__(self):
        return (type(self), (self.task_id, self.last_error, self.attempts, self.max_retries))


class TaskTimeoutError(TaskFailedError):
    """Task `task_id` ran longer than its `timeout` (seconds)."""

    def __init__(self, task_id: str, timeout: float, cause: BaseException | None = None):
        self.timeout = timeout
        super().__init__(task_id, cause, f"task {task_id!r} timed out after {timeout:g}s")

    def __reduce__(self):
        return (type(self), (self.task_id, self.timeout, self.cause))


class CycleLimitError(TaskFailedError):
    """Task `task_id` failed because task `target` may not run again: `target` has run
    `cycle_count` times of `max_cycles`. Raised by `next_iteration()` at the call (then
    `target` is the task itself), or failing the task whose goto asked for `target`."""

    def __init__(self, task_id: str, max_cycles: int, cycle_count: int, target: str | None = None):
        self.max_cycles = max_cycles
        self.cycle_count = cycle_count
        self.target = task_id if target is None else target
        used = f"it ran {cycle_count} time(s) and max_cycles={max_cycles}"
        if self.target == task_id:
            message = f"task {task_id!r} has no cycle left: {used}"
        else:
            message = f"task {task_id!r} asked to go to task {self.target!r}, which has no run left: {used}"
        super().__init__(task_id, None, message)

    def __reduce__(self):
        return (type(self), (self.task_id, self.max_cycles, self.cycle_count, self.target))


class RemoteTaskError(TaskFailedError):
    """A task raised on a worker; its exception cannot cross the wire, its facts do."""

    def __init__(self, task_id: str, type_name: str, message: str, traceback: str = ""):
        self.type_name = type_name
        self.remote_message = message
        self.traceback = traceback
        super().__init__(task_id, None, f"task {task_id!r} raised {type_name}: {message}")

    def __reduce__(self):
        return (type(self), (self.task_id, self.type_name, self.remote_message, self.traceback))


class ParallelGroupError(GraflowError):
    """The policy of parallel group `group_id` failed it.

    `failed_tasks` is a list of ``(task_id, exception)`` in member order, the exception
    being what the member raised on its last attempt; `successful_tasks` a list of ids.
    """

    def __init__(
        self,
        group_id: str,
        failed_tasks: Sequence[tuple[str, BaseException]],
        successful_tasks: Sequence[str],
        message: str | None = None,
    ):
        self.group_id = group_id
        self.failed_tasks = list(failed_tasks)
        self.successful_tasks = list(successful_tasks)
        if message is None:
            failed = ", ".join(f"{tid} ({_describe(exc)})" for tid, exc in self.failed_tasks)
            message = (
                f"parallel group {group_id!r} failed: {len(self.failed_tasks)} failed "
                f"[{failed}], {len(self.successful_tasks)} succeeded"
            )
        super().__init__(message)
        if self.failed_tasks:
            self.__cause__ = self.failed_tasks[0][1]

    def __reduce__(self):
        return (type(self), (self.group_id, self.failed_tasks, self.successful_tasks, str(self)))


class WorkflowCancelledError(GraflowError):
    """Task `task_id` cancelled the run with `reason`."""

    def __init__(self, task_id: str, reason: str):
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"workflow cancelled by task {task_id!r}: {reason}")

    def __reduce__(self):
        return (type(self), (self.task_id, self.reason))


class CheckpointError(GraflowError):
    """A checkpoint cannot be written, read, verified or resumed."""


class RunAlreadyRunningError(CheckpointError):
    """`resume` refused: another process is running run `run_id` (it holds the run's lease)."""

    def __init__(self, run_id: str, message: str | None = None):
        self.run_id = run_id
        super().__init__(message or f"run {run_id} is already running")

    def __reduce__(self):
        return (type(self), (self.run_id, str(self)))


class RunCompletedError(CheckpointError):
    """`resume` refused: run `run_id` has completed since the checkpoint was saved
    (``force=True`` runs it again)."""

    def __init__(self, run_id: str, message: str | None = None):
        self.run_id = run_id
        super().__init__(message or f"run {run_id} has completed")

    def __reduce__(self):
        return (type(self), (self.run_id, str(self)))


class FeedbackError(GraflowError):
    """A human-in-the-loop request cannot be made, answered or awaited."""


class FeedbackTimeoutError(FeedbackError):
    """No answer arrived within the request's timeout."""


class FeedbackCancelledError(FeedbackError):
    """The request was cancelled before it was answered."""


class FeedbackNotFoundError(FeedbackError):
    """No request has this feedback id."""


class FeedbackAlreadyAnsweredError(FeedbackError):
    """The request was already answered or cancelled."""


class FeedbackValidationError(FeedbackError, ValueError):
    """A question or an answer that does not fit (a response not of the request's type,
    options that are not strings, a notification_config without a url, ...); `field`
    names the offending field. Also a ValueError."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class CorruptRecordError(GraflowError):
    """A record a store keeps (a feedback request, a suspension, a run record) exists but
    cannot be read back: it is not JSON, has fields of the wrong types or shape, is too
    large, or its Redis key holds another type. `kind` says what it is, `record_id`
    which one (its id, or the file or key it is in), `reason` what is wrong with it: never
    any of its content. Listings skip such records; reading one directly raises this."""

    def __init__(self, kind: str, record_id: str, reason: str):
        self.kind = kind
        self.record_id = record_id
        self.reason = reason
        super().__init__(f"{kind} {record_id!r} cannot be read: {reason}")

    def __reduce__(self):
        return (type(self), (self.kind, self.record_id, self.reason))


class FeedbackCorruptError(FeedbackError, CorruptRecordError):
    """The stored record of feedback request `record_id` cannot be read back."""

    def __init__(self, record_id: str, reason: str, kind: str = "feedback request"):
        CorruptRecordError.__init__(self, kind, record_id, reason)

    def __reduce__(self):
        return (type(self), (self.record_id, self.reason, self.kind))


class TransportError(GraflowError):
    """A transport (Redis Streams, ...) cannot be reached or used."""


class HandlerError(GraflowError):
    """An unknown handler name, or a handler that cannot run the task."""


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no exception"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "CheckpointError",
    "CorruptRecordError",
    "CycleLimitError",
    "FeedbackAlreadyAnsweredError",
    "FeedbackCancelledError",
    "FeedbackCorruptError",
    "FeedbackError",
    "FeedbackNotFoundError",
    "FeedbackTimeoutError",
    "FeedbackValidationError",
    "GraflowError",
    "GraphError",
    "HandlerError",
    "ParallelGroupError",
    "RemoteTaskError",
    "RetryLimitExceededError",
    "RunAlreadyRunningError",
    "RunCompletedError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "WorkflowCancelledError",
]
