"""Fixtures shared by the test suite; service fixtures live in tests/services.py
and tests/redis_server.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from docker_engine import docker_engine
from redis_faults import fault_proxy
from redis_server import client, redis_server, redis_url
from services import s3_bucket, s3_service
from structlog.testing import capture_logs
from worker_processes import pool, workers


@pytest.fixture
def log_capture() -> Iterator[list[dict]]:
    """structlog's capture_logs, leaving structlog as unconfigured as it found it."""
    was_configured = structlog.is_configured()
    try:
        with capture_logs() as entries:
            yield entries
    finally:
        if not was_configured:
            structlog.reset_defaults()


__all__ = [
    "client",
    "docker_engine",
    "fault_proxy",
    "pool",
    "redis_server",
    "redis_url",
    "s3_bucket",
    "s3_service",
    "workers",
]
