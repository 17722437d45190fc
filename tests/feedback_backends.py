"""The feedback store backends the conformance suites run over: memory, file and Redis
(a real server), each openable again here and in a child process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from graflow_async.feedback import FeedbackStore, FileFeedbackStore, MemoryFeedbackStore, RedisFeedbackStore


@dataclass
class Backend:
    """How to open stores on one set of data, here and in a child process."""

    kind: str
    make: Callable[[], FeedbackStore]
    child_expr: str  # Python expression building an equivalent store in another process


def make_backend(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Backend:
    if kind == "memory":
        memory = MemoryFeedbackStore()
        return Backend(kind, lambda: memory, "")
    if kind == "file":
        directory = tmp_path / "feedback"
        return Backend(kind, lambda: FileFeedbackStore(directory), f"FileFeedbackStore({str(directory)!r})")
    url: str = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    return Backend(
        kind,
        lambda: RedisFeedbackStore(url, namespace=namespace),
        f"RedisFeedbackStore({url!r}, namespace={namespace!r})",
    )
