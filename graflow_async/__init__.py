"""graflow-async: an asyncio-native workflow runtime.

    from graflow_async import task, workflow, run

    @task
    async def fetch() -> dict: ...

    with workflow("release") as wf:
        fetch >> (build_a | build_b) >> deploy
    result = await run(wf)

See README.md and SPEC.md for the whole API.
"""

from graflow_async.define.graph import Chain, ParallelGroup, Workflow, chain, parallel, workflow
from graflow_async.define.limits import Concurrency, RateLimit
from graflow_async.define.policies import (
    AtLeastNGroupPolicy,
    BestEffortGroupPolicy,
    CoordinationBackend,
    CriticalGroupPolicy,
    GroupExecutionPolicy,
    RetryPolicy,
    StrictGroupPolicy,
    TaskResult,
)
from graflow_async.define.schedules import Schedule
from graflow_async.define.tasks import Task, task
from graflow_async.events import Event
from graflow_async.exceptions import (
    CheckpointError,
    CorruptRecordError,
    CycleLimitError,
    FeedbackAlreadyAnsweredError,
    FeedbackCancelledError,
    FeedbackCorruptError,
    FeedbackError,
    FeedbackNotFoundError,
    FeedbackTimeoutError,
    FeedbackValidationError,
    GraflowError,
    GraphError,
    HandlerError,
    ParallelGroupError,
    RemoteTaskError,
    RetryLimitExceededError,
    RunAlreadyRunningError,
    RunCompletedError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    WorkflowCancelledError,
)
from graflow_async.execute.context import Channel, TaskContext
from graflow_async.feedback import FeedbackRequest, FeedbackResponse, FeedbackType
from graflow_async.handlers import TaskCall, TaskHandler, register_handler
from graflow_async.run.checkpoints import CheckpointManager
from graflow_async.run.durable import recover, run_result
from graflow_async.run.resume import resume
from graflow_async.run.runner import WorkflowResult, run, run_sync
from graflow_async.run.scheduler import Scheduler
from graflow_async.run.streams import run_stream
from graflow_async.wire.messages import StreamItem

__version__ = "0.1.0"

__all__ = [
    "AtLeastNGroupPolicy",
    "BestEffortGroupPolicy",
    "Chain",
    "Channel",
    "CheckpointError",
    "CheckpointManager",
    "Concurrency",
    "CoordinationBackend",
    "CorruptRecordError",
    "CriticalGroupPolicy",
    "CycleLimitError",
    "Event",
    "FeedbackAlreadyAnsweredError",
    "FeedbackCancelledError",
    "FeedbackCorruptError",
    "FeedbackError",
    "FeedbackNotFoundError",
    "FeedbackRequest",
    "FeedbackResponse",
    "FeedbackTimeoutError",
    "FeedbackType",
    "FeedbackValidationError",
    "GraflowError",
    "GraphError",
    "GroupExecutionPolicy",
    "HandlerError",
    "ParallelGroup",
    "ParallelGroupError",
    "RateLimit",
    "RemoteTaskError",
    "RetryLimitExceededError",
    "RetryPolicy",
    "RunAlreadyRunningError",
    "RunCompletedError",
    "Schedule",
    "Scheduler",
    "StreamItem",
    "StrictGroupPolicy",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskFailedError",
    "TaskHandler",
    "TaskResult",
    "TaskTimeoutError",
    "TransportError",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowResult",
    "chain",
    "parallel",
    "recover",
    "register_handler",
    "resume",
    "run",
    "run_result",
    "run_stream",
    "run_sync",
    "task",
    "workflow",
]
