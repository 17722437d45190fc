"""Who drives a run, as its record says (SPEC 8): a process is named by its pid and its
host identity (the host name, the boot id and the pid namespace), so that a pid is only
compared with those of the same kernel and namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _read_first_line(path: str) -> str:
    try:
        return Path(path).read_text().strip()[:100]
    except OSError:
        return "-"


def host_identity() -> str:
    """This machine and pid namespace: where a process id means the same process (read
    once per process)."""
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = "-"
        boot = _read_first_line("/proc/sys/kernel/random/boot_id")
        _identity = (os.getpid(), f"{socket.gethostname()}|{boot}|{namespace}")
    return _identity[1]


_identity: tuple[int, str] | None = None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (on this host, in this pid
    namespace): a killed process its parent has yet to reap (a zombie) is gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: existing is all we can tell
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
