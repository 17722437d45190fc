"""``python -m guarded_pkg``: nobody imports it when a worker starts; importing it
leaves a marker."""

from __future__ import annotations

import os

from graflow_async import task

from .markers import leave

leave("guarded_pkg.__main__")


@task
async def main_task() -> int:
    leave("guarded_pkg.__main__.main_task-ran")
    return os.getpid()
