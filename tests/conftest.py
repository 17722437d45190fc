"""Fixtures shared by the test suite; service fixtures live in tests/services.py."""

from __future__ import annotations

from services import s3_bucket, s3_service

__all__ = ["s3_bucket", "s3_service"]
