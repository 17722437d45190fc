"""Fixtures shared by the test suite; service fixtures live in tests/services.py
and tests/redis_server.py."""

from __future__ import annotations

from redis_server import redis_server, redis_url
from services import s3_bucket, s3_service

__all__ = ["redis_server", "redis_url", "s3_bucket", "s3_service"]
