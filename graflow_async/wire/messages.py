"""The messages that cross a transport between a run actor and its executors.

    run actor --TaskMessage-->      executor     run one attempt of a task
    run actor <--TaskReply---       executor     how it went, and what the task asked for
    run actor <--ContextRequest--   task         a context operation (channel, checkpoint, feedback)
    run actor ---ContextReply-->    task         its answer

A task reaches its run only through these. Their plain fields are what goes over the
wire (msgpack, see `wire.envelope`); the fields marked *in-process* carry live
objects on the memory transport and are never sent.

What a task asks of the run's graph (`next_task`, `next_iteration`, `cancel_workflow`,
`terminate_workflow`) travels as *directives* (`plan.directives`) in its `TaskReply`: they take effect
when the task returns, together with its result, so an attempt that dies before
replying leaves nothing half-applied and a redelivered attempt asks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from graflow_async.define.tasks import Task


class TaskMessage(NamedTuple):
    """Run attempt `attempt` (cycle `cycle`) of task `task_id` with `kwargs`; reply to `reply_to`."""

    run_id: str
    task_id: str
    node: int  # the task's node index in the run's plan
    attempt: int
    reply_to: str  # the run's inbox on this transport: replies and context requests go there
    kwargs: dict[str, Any]
    timeout: float | None = None
    task_ref: str | None = None  # ``module:qualname``, how a remote worker finds the function
    task: Task | None = None  # in-process
    lease_timeout: float | None = None  # how long a worker's claim lasts without a heartbeat
    max_deliveries: int | None = None  # deliveries before the message is dead-lettered
    inject_context: bool = False  # for workers: give the function a context
    cycle: int = 1  # which run of this task this is (1-based; see next_iteration and goto)
    max_cycles: int = 100
    resumed_metadata: dict[str, Any] | None = None  # the checkpoint's metadata, for the task that saved it
    trace: dict[str, str] | None = None  # the run span's W3C trace context, when tracing (see tracing.py)
    epoch: int = 0  # the run's incarnation (on Redis); 0: a run without incarnations (in-process)
    priority: int = 5  # 0-9: workers take the ready task of highest priority first (SPEC 11)


class TaskReply(NamedTuple):
    """The outcome of one attempt. `directives` are what the task asked of the run's graph
    (`Cancel`, `Terminate`, `AddTasks`, `Iterate`), in call order; `suspended` says the
    task stopped because its feedback wait timed out (the run suspends)."""

    run_id: str
    node: int
    attempt: int
    ok: bool
    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0
    directives: tuple[Any, ...] = ()
    retryable: bool = True
    suspended: bool = False
    cycle: int = 1
    task_id: str = ""  # names the task in errors that come back from a worker
    epoch: int = 0  # the incarnation of the run the task message came from


class ContextRequest(NamedTuple):
    """Context operation `op` with `args`, from an attempt of task node `node`;
    the answer goes to `reply_to` (the requesting executor's queue) as a `ContextReply`."""

    run_id: str
    node: int
    cycle: int
    attempt: int
    request_id: str
    op: str
    args: dict[str, Any]
    reply_to: str
    epoch: int = 0  # the incarnation of the run the task message came from


class ContextReply(NamedTuple):
    """The answer to request `request_id`: `value`, or `error` when `ok` is false."""

    request_id: str
    ok: bool
    value: Any = None
    error: BaseException | None = None


class QueueLost(NamedTuple):
    """Handed by a transport inbox to its reader: `queue` vanished (a Redis restart without
    persistence) and was made again, so what was sent to it meanwhile is lost; the reader
    sends again whatever it still awaits an answer for."""

    queue: str


class TasksLost(NamedTuple):
    """Handed by a transport inbox to its reader (a run): task entries it sent to workers
    vanished before anyone answered them (what a failover to a replica that missed the
    writes looks like); `tasks` holds the (node, cycle, attempt) of each. The run sends
    again those it still awaits."""

    queue: str
    tasks: tuple[tuple[int, int, int], ...]


class QueueFailed(NamedTuple):
    """Handed by a transport inbox to its reader: the queue could not be read for a long
    while, for a reason waiting does not cure (`error`, a `TransportError`). A run fails
    with it; an executor keeps waiting."""

    queue: str
    error: Exception


class Delivered(NamedTuple):
    """Handed by a transport inbox after a batch of a run's replies: every entry of
    `queue` up to stream id `upto` has been handed over. A durable run, once it journaled
    what they told it, lets those entries go (the journal's append trims them)."""

    queue: str
    upto: bytes


class RetryDue(NamedTuple):
    """Sent by a retry timer to the run's own inbox: `node` may run again."""

    node: int


MAX_CHUNK = 1 << 20  # bytes of one streamed chunk, packed (SPEC 12)


class StreamItem(NamedTuple):
    """One chunk a task streamed: `id` (for ``after=`` and SSE's ``Last-Event-ID``), the
    task and attempt that streamed it, and the chunk. `missed`: items dropped (past the
    stream's cap) just before this one, that this reader never saw."""

    id: str
    task_id: str
    attempt: int
    data: Any
    missed: int = 0


class StreamChunk(NamedTuple):
    """A chunk task `task_id` (node `node`, attempt `attempt`) streamed (SPEC 12), handed
    to its run in this process (on Redis, workers append to the run's stream instead)."""

    run_id: str
    node: int
    cycle: int
    attempt: int
    epoch: int
    task_id: str
    data: Any
