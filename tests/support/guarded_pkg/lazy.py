"""A submodule nobody imports when a worker starts; importing it leaves a marker."""

from __future__ import annotations

import os

from graflow_async import task

from .markers import leave

leave(__name__)


@task
async def lazy_task() -> int:
    leave(f"{__name__}.lazy_task-ran")
    return os.getpid()
