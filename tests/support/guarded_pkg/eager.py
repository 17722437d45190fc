"""Imported with the package: its tasks are a worker's to run."""

from __future__ import annotations

import os

from graflow_async import task


@task
async def eager_task() -> int:
    return os.getpid()
