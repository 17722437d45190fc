"""The public surface: every name SPEC promises is importable where it says."""

from __future__ import annotations

import graflow_async
from graflow_async import exceptions

SPEC_TOP_LEVEL = [
    "task",
    "workflow",
    "chain",
    "parallel",
    "run",
    "run_sync",
    "WorkflowResult",
    "TaskContext",
    "RetryPolicy",
    "GroupExecutionPolicy",
    "StrictGroupPolicy",
    "BestEffortGroupPolicy",
    "AtLeastNGroupPolicy",
    "CriticalGroupPolicy",
    "TaskResult",
    "CoordinationBackend",
    "register_handler",
    "resume",
    "CheckpointManager",
    "FeedbackType",
    "FeedbackRequest",
    "FeedbackResponse",
    "Schedule",
]
SPEC_ERRORS = [
    "GraflowError",
    "TaskFailedError",
    "RetryLimitExceededError",
    "ParallelGroupError",
    "WorkflowCancelledError",
    "TaskTimeoutError",
    "GraphError",
    "CheckpointError",
    "FeedbackError",
    "FeedbackTimeoutError",
    "FeedbackCancelledError",
    "TransportError",
    "HandlerError",
]


def test_every_name_in_all_exists() -> None:
    for name in graflow_async.__all__:
        assert hasattr(graflow_async, name), name


def test_spec_names_are_exported() -> None:
    for name in SPEC_TOP_LEVEL + SPEC_ERRORS:
        assert name in graflow_async.__all__, name


def test_errors_live_in_exceptions_and_share_one_base() -> None:
    for name in SPEC_ERRORS:
        cls = getattr(exceptions, name)
        assert cls is getattr(graflow_async, name)
        assert issubclass(cls, exceptions.GraflowError)
    assert issubclass(exceptions.RetryLimitExceededError, exceptions.TaskFailedError)
    assert issubclass(exceptions.TaskTimeoutError, exceptions.TaskFailedError)
    assert issubclass(exceptions.FeedbackTimeoutError, exceptions.FeedbackError)
    assert issubclass(exceptions.FeedbackCancelledError, exceptions.FeedbackError)


def test_spec_submodules_expose_their_names() -> None:
    from graflow_async import feedback, handlers, transports, web

    for module, names in [
        (feedback, ["MemoryFeedbackStore", "FileFeedbackStore", "RedisFeedbackStore", "FeedbackType"]),
        (transports, ["MemoryTransport", "RedisStreamsTransport", "Transport"]),
        (handlers, ["TaskHandler", "TaskCall", "register_handler"]),
        (web, ["create_app", "setup"]),
    ]:
        for name in names:
            assert getattr(module, name) is not None, (module.__name__, name)
