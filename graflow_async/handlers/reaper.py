"""Containers whose owner died are removed: every container the docker handler creates
carries labels naming its owner (this host, its boot, the process id and the process's
start time); when a docker handler first uses an engine, and then at most every
`REAP_EVERY` seconds while it is used (a worker's housekeeping included), it removes
the labelled containers of this host whose owner is gone (a driver or worker that was
SIGKILLed, or a host that rebooted). Containers of other hosts are left alone: whether
their owner lives cannot be told from here.

`owner_gone` decides (a pure function of the labels and this host's facts); `reap` acts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker

from graflow_async.define.docker_options import LABEL
from graflow_async.logs import LibraryLog

log = LibraryLog()
REAP_EVERY = 60.0
HOST, BOOT, PID, START = (f"{LABEL}.owner.{k}" for k in ("host", "boot", "pid", "start"))


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    boot: str
    pid: int
    start: str  # the process's start time in clock ticks after boot ("" when unknown)

    def labels(self) -> dict[str, str]:
        return {HOST: self.host, BOOT: self.boot, PID: str(self.pid), START: self.start}


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/<pid>/stat); None when there is no
    such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


@functools.cache
def boot_id() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    return ""


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname(), boot_id(), pid, process_start(pid) or "")


def owner_gone(labels: Mapping[str, str], me: Owner, start_of: Callable[[int], str | None] = process_start) -> bool:
    """Whether the process that created a container with `labels` is gone for sure."""
    if labels.get(HOST) != me.host:
        return False  # another host's, or not ours to judge
    if labels.get(BOOT) != me.boot:
        return True  # this host rebooted since
    try:
        pid = int(labels.get(PID, ""))
    except ValueError:
        return False
    start = start_of(pid)
    if start is None:
        return True  # no such process
    recorded = labels.get(START, "")
    return bool(recorded and start and recorded != start)  # the pid was reused by another process


async def reap(docker: aiodocker.Docker, me: Owner | None = None) -> int:
    """Remove this host's labelled containers whose owner is gone; how many were removed."""
    me = me or this_process()
    filters = json.dumps({"label": [f"{HOST}={me.host}"]})
    found: list[Any] = await docker.containers.list(all=True, filters=filters)
    removed = 0
    for container in found:
        try:
            labels = container["Labels"] or {}
        except KeyError:
            continue
        if not owner_gone(labels, me):
            continue
        try:
            await container.delete(force=True, v=True)
            removed += 1
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                log.warning("could not remove an orphaned task container", container=container.id, error=exc.message)
    if removed:
        log.info("removed task containers whose owner is gone", count=removed)
    return removed
