"""A real Docker engine for the tests: Debian's ``dockerd`` started on a socket in a
temporary directory (never the machine's own engine), and a tiny image built locally
(no registry is reachable): busybox, with this host's Python bind-mounted read-only at
run time, so the container runs the same interpreter as the tests.

The engine needs root. An engine that cannot start fails the tests that need it: they
never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DOCKERD = "/usr/sbin/dockerd"
BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static
_START_TIMEOUT = 30.0
IMAGE = "graflow-test-python:1"


@dataclass(frozen=True)
class DockerEngine:
    url: str  # unix://.../docker.sock
    image: str  # busybox + symlinks; run with `interpreter_volumes`
    python: str  # this host's interpreter, as the container sees it

    def handler_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Options running a task on this engine with this host's Python."""
        return {
            "image": self.image,
            "docker_url": self.url,
            "python": self.python,
            "volumes": interpreter_volumes(),
            **extra,
        }

    def docker(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        """Run the docker CLI against this engine; its output."""
        done = subprocess.run(
            [_cli(), "-H", self.url, *args], input=input, capture_output=True, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def labelled_containers(self, run_id: str | None = None) -> list[str]:
        """Ids of every container (running or not) carrying the handler's label."""
        label = "graflow-async" if run_id is None else f"graflow-async={run_id}"
        return self.docker("ps", "-a", "-q", "--filter", f"label={label}").split()


def interpreter_volumes() -> dict[str, dict[str, str]]:
    """This host's Python and the system libraries it links, read-only."""
    paths = {"/usr", sys.base_prefix}
    return {p: {"bind": p, "mode": "ro"} for p in sorted(paths)}


def _cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("the docker CLI is missing: install Debian's docker.io")
    return found


class Dockerd:
    """One dockerd with its own data, exec root and socket under a temporary directory."""

    def __init__(self) -> None:
        # unix socket paths are limited to ~108 bytes: keep the directory short
        self.directory = Path(tempfile.mkdtemp(prefix="gfd-", dir="/tmp"))
        self.url = f"unix://{self.directory}/docker.sock"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the docker handler tests start their own dockerd, which needs root")
        for path in (DOCKERD, BUSYBOX):
            if not Path(path).exists():
                raise RuntimeError(f"{path} is missing: `make install` installs docker.io and busybox-static")
        d = self.directory
        command = [
            DOCKERD,
            "--host",
            self.url,
            "--data-root",
            f"{d}/data",
            "--exec-root",
            f"{d}/exec",
            "--pidfile",
            f"{d}/docker.pid",
            "--iptables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
        ]
        with (d / "dockerd.log").open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if (d / "docker.sock").exists() and self._answers():
                return
            time.sleep(0.2)
        tail = (d / "dockerd.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"dockerd did not start within {_START_TIMEOUT}s:\n{tail}")

    def _answers(self) -> bool:
        done = subprocess.run([_cli(), "-H", self.url, "version"], capture_output=True, timeout=10, check=False)
        return done.returncode == 0

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(5)
        subprocess.run(["umount", "-R", "-l", str(self.directory / "data")], capture_output=True, check=False)
        subprocess.run(["umount", "-R", "-l", str(self.directory / "exec")], capture_output=True, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def build_image(engine: DockerEngine, tag: str = IMAGE) -> None:
    """busybox, its applets, /lib links into /usr (mounted at run time) and `python3`."""
    root = Path(tempfile.mkdtemp(prefix="graflow-image-"))
    try:
        for name in ("bin", "etc", "tmp", "root", "usr"):
            (root / name).mkdir()
        (root / "tmp").chmod(0o1777)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in ("sh", "ls", "cat", "echo", "sleep", "env", "id"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "lib").symlink_to("usr/lib")
        (root / "lib64").symlink_to("usr/lib64")
        (root / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))
        (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        archive = root.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        engine.docker("import", str(archive), tag)
        archive.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd for the session, with the test image built."""
    daemon = Dockerd()
    daemon.start()
    try:
        engine = DockerEngine(url=daemon.url, image=IMAGE, python=os.path.realpath(sys.executable))
        build_image(engine)
        yield engine
    finally:
        daemon.stop()


def single(t: Any, **bound: Any) -> Any:
    """A workflow of the one task `t` (with `bound` arguments)."""
    from graflow_async import workflow

    with workflow(f"docker-{t.id}") as wf:
        wf.add(t(task_id=t.id, **bound))
    return wf


def variant(t: Any, handler: Any = "docker", **options: Any) -> Any:
    """`t` with some handler options changed (the others as its module declared them)."""
    from graflow_async.define.tasks import Task

    return Task(
        t.func,
        id=t.id,
        handler=handler,
        handler_kwargs={**t.handler_kwargs, **options},
        inject_context=t.inject_context,
    )


def unique_tag() -> str:
    return f"graflow-missing-{uuid.uuid4().hex[:8]}:none"
