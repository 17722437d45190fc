"""Tasks the docker handler tests run in containers. Module-level, so that the container
(and a Redis worker, with ``--import docker_flows``) imports them by path; the handler
options come from the environment the tests set (`configure`)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from graflow_async import TaskContext, task


def _docker(**extra: Any) -> dict[str, Any]:
    """Options for the test engine, read from the environment: a worker process gets
    the same ones from the test that starts it."""
    url, image, python = (os.environ.get(k, "") for k in ("GFT_DOCKER_URL", "GFT_IMAGE", "GFT_PYTHON"))
    paths = sorted({"/usr", sys.base_prefix})
    return {
        "image": image or "unset",
        "docker_url": url or None,
        "python": python or "python3",
        "volumes": {p: {"bind": p, "mode": "ro"} for p in paths},
        **extra,
    }


def configure(url: str, image: str, python: str) -> dict[str, str]:
    """Point this module's tasks at an engine; the variables, for a worker's environment."""
    env = {"GFT_DOCKER_URL": url, "GFT_IMAGE": image, "GFT_PYTHON": python}
    os.environ.update(env)
    for t in DOCKER_TASKS:
        extra = {k: v for k, v in t.handler_kwargs.items() if k not in ("image", "docker_url", "python", "volumes")}
        t.handler_kwargs = _docker(**extra)
    return env


@task(handler="docker", handler_kwargs=_docker())
def add(a: int, b: int) -> dict[str, Any]:
    """Runs in the container: says where it ran."""
    return {
        "sum": a + b,
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "uid": os.getuid(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
    }


@task(handler="docker", handler_kwargs=_docker())
async def boom(code: int) -> None:
    raise ValueError(f"bad input {code}")


@task(handler="docker", handler_kwargs=_docker())
def exit_hard() -> None:
    print("about to exit with 3", flush=True)
    os._exit(3)


@task(handler="docker", handler_kwargs=_docker(mem_limit="48m"))
def hog() -> int:
    print("allocating 400 MiB", flush=True)
    block = bytearray(400 << 20)  # zero-filled: every page is touched
    return len(block)


@task(handler="docker", handler_kwargs=_docker(timeout=1.0))
def sleepy() -> str:
    print("sleeping", flush=True)
    time.sleep(30)
    return "woke"


@task(handler="docker", handler_kwargs=_docker())
def nap(seconds: float, marker: str) -> str:
    Path(marker).write_text("started")
    time.sleep(seconds)
    return "done"


@task(handler="docker", handler_kwargs=_docker())
def unserializable() -> Any:
    return object()


@task(handler="docker", handler_kwargs=_docker(environment={"GREETING": "hello"}, mem_limit="64m", cpus=0.5))
def limits() -> dict[str, Any]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    try:
        Path("/graflow/lib/graflow_async/written").write_text("x")
        code_writable = True
    except OSError:
        code_writable = False
    return {
        "greeting": os.environ.get("GREETING"),
        "memory": read("/sys/fs/cgroup/memory/memory.limit_in_bytes") or read("/sys/fs/cgroup/memory.max"),
        "cpu_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or read("/sys/fs/cgroup/cpu.max"),
        "code_writable": code_writable,
    }


@task(handler="docker", handler_kwargs=_docker())
def write_file(directory: str, text: str) -> str:
    path = Path(directory) / "out.txt"
    path.write_text(text)
    return str(path)


@task(handler="docker", handler_kwargs=_docker(gpu=True))
def on_gpu() -> str:
    return "ran"


@task(handler="docker", handler_kwargs=_docker(mount_code=False))
def without_code() -> str:
    return "ran"


@task(handler="docker", handler_kwargs=_docker(context="full"), inject_context=True, max_retries=2)
async def with_context(context: TaskContext, n: int) -> dict[str, Any]:
    """Fails its first attempt by exiting; then uses the channel and adds a task."""
    if context.attempt == 1:
        os._exit(1)
    await context.channel.set("seen", n)
    total = await context.channel.incr("total", n)
    await context.channel.append("log", f"docker:{context.attempt}")
    context.next_task(after_docker)
    return {"attempt": context.attempt, "total": total, "run_id": context.run_id}


@task
async def after_docker() -> str:
    return "after"


@task(handler="docker", handler_kwargs=_docker(context="full"), inject_context=True)
async def checkpoint_in_container(context: TaskContext) -> str:
    return await context.checkpoint(metadata={"from": "container"})


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def approve_in_container(context: TaskContext) -> bool:
    return await context.request_approval("ship it?", timeout=0.5)


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def ask_in_container(context: TaskContext) -> bool:
    return await context.request_approval("ship it?", timeout=60)


@task(handler="docker", handler_kwargs=_docker(), max_retries=1)
async def member(i: int) -> int:
    await asyncio.sleep(0)
    if i == 3:
        raise RuntimeError("member 3 fails")
    return i * 10


@task(handler="docker", handler_kwargs=_docker())
def traceparent() -> str | None:
    return os.environ.get("TRACEPARENT")


# --- hostile tasks: what untrusted code would try ------------------------------------------------------
def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _writable(path: str) -> bool:
    try:
        Path(path).write_text("x")
    except OSError:
        return False
    return True


@task(handler="docker", handler_kwargs=_docker())
def privileges(shared: str = "") -> dict[str, Any]:
    """What the sandbox lets the code do."""
    cgroup_pids = ""
    for candidate in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
        if Path(candidate).exists():
            cgroup_pids = Path(candidate).read_text().strip()
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cap_eff": _status_field("CapEff"),
        "no_new_privs": _status_field("NoNewPrivs"),
        "root_writable": _writable("/etc/graflow-was-here"),
        "tmp_writable": _writable("/tmp/scratch"),
        "code_writable": _writable("/graflow/lib/graflow_async/written"),
        "call_writable": _writable("/graflow/call/call.msgpack"),
        "shared_writable": bool(shared) and _writable(f"{shared}/x"),
        "pids_max": cgroup_pids,
    }


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def ask_host_task(context: TaskContext) -> str:
    context.next_task(after_docker)
    return "asked"


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def ask_cancel(context: TaskContext) -> str:
    context.cancel_workflow("from the container")
    return "asked"


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def checkpoint_swallowed(context: TaskContext) -> str:
    """Tries to checkpoint and hides the refusal: the task fails all the same."""
    try:
        await context.checkpoint()
    except Exception as exc:
        return f"swallowed {type(exc).__name__}"
    return "checkpointed"


@task(handler="docker", handler_kwargs=_docker(context="full"), inject_context=True)
async def checkpoint_loop(context: TaskContext, times: int) -> int:
    for i in range(times):
        await context.checkpoint(metadata={"i": i})
    return times


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def many_connections(context: TaskContext, n: int) -> int:
    held = [await asyncio.open_unix_connection("/graflow/call/ctx.sock") for _ in range(n)]
    await asyncio.sleep(30)  # the handler ends the container before this returns
    return len(held)


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def feedback_flood(context: TaskContext, n: int) -> int:
    asks = [context.request_text(f"question {i}", timeout=30) for i in range(n)]
    await asyncio.gather(*asks, return_exceptions=True)
    return n


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def channel_flood(context: TaskContext, megabytes: int) -> int:
    for i in range(megabytes):
        await context.channel.set(f"blob{i}", "x" * (1 << 20))
    return megabytes


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def stream_flood(context: TaskContext, n: int, kib: int) -> int:
    """Streams `n` chunks of `kib` KiB from an untrusted container."""
    for i in range(n):
        await context.stream(f"{i}:" + "x" * (kib << 10))
    return n


@task(handler="docker", handler_kwargs=_docker(), inject_context=True)
async def request_burst(context: TaskContext, n: int) -> int:
    await asyncio.gather(*(context.channel.get("k") for _ in range(n)))
    return n


@task(handler="docker", handler_kwargs=_docker())
def leave_reply(kind: str) -> None:
    """Leaves something that is not a reply where the reply goes, and exits 0."""
    reply = Path("/graflow/call/out/reply.msgpack")
    if kind == "fifo":
        os.mkfifo(reply)
    elif kind == "symlink":
        reply.symlink_to("/etc/passwd")
    elif kind == "directory":
        reply.mkdir()
    elif kind == "huge":
        with reply.open("wb") as f:
            f.truncate((64 << 20) + 1)
    elif kind == "garbage":
        reply.write_bytes(b"\xc1" * 100)
    sys.stdout.flush()
    os._exit(0)


DOCKER_TASKS = [
    privileges,
    ask_host_task,
    ask_cancel,
    checkpoint_swallowed,
    checkpoint_loop,
    many_connections,
    feedback_flood,
    channel_flood,
    stream_flood,
    request_burst,
    leave_reply,
    traceparent,
    add,
    boom,
    exit_hard,
    hog,
    sleepy,
    nap,
    unserializable,
    limits,
    write_file,
    on_gpu,
    without_code,
    with_context,
    checkpoint_in_container,
    approve_in_container,
    ask_in_container,
    member,
]
