"""The docker handler's options, checked where a task declares them, and the container
it asks the engine for: pure functions of facts, tested without an engine.

SPEC section 8 lists the keys of ``handler_kwargs``; any other key is a `HandlerError`
naming it, raised by ``@task`` (not at the first run).

A docker task is a sandbox for untrusted code: every default is the safe one (an
unprivileged user, no capabilities, ``no-new-privileges``, a read-only root filesystem
with a small ``/tmp``, a pids limit, read-only mounts, no network, a limited context
with quotas); a task that needs more declares it, option by option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graflow_async.exceptions import HandlerError
from graflow_async.options import number

KEYS = frozenset(
    {
        "image",
        "python",
        "gpu",
        "volumes",
        "environment",
        "network_mode",
        "mem_limit",
        "cpus",
        "docker_url",
        "timeout",
        "mount_code",
        # the sandbox (SPEC 8): each opens one thing the defaults keep closed
        "user",
        "cap_add",
        "no_new_privileges",
        "read_only",
        "tmpfs_size",
        "pids_limit",
        "context",
        "max_requests_per_second",
        "max_connections",
        "max_pending_feedback",
        "max_channel_bytes",
    }
)
NOBODY = "65534:65534"
CONTEXTS = ("limited", "full")
LABEL = "graflow-async"  # every container the handler creates carries it (value: the run id)
CALL_DIR = "/graflow/call"  # the per-call directory inside the container
LIB_DIR = "/graflow/lib"  # graflow_async and what it imports, read-only
CODE_DIR = "/graflow/code"  # the task's own module, read-only
DEFAULT_URL = "unix:///var/run/docker.sock"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one attempt may ask of its context (``handler_kwargs`` ``max_*``)."""

    requests_per_second: float = 100.0  # context requests (bursts up to one second's worth)
    connections: int = 4  # open connections to the context socket
    pending_feedback: int = 8  # feedback requests not answered
    channel_bytes: int = 16 << 20  # bytes written to the channel (set and append)


@dataclass(frozen=True, slots=True)
class DockerOptions:
    image: str
    python: str = "python3"
    gpu: bool | int | str = False
    volumes: tuple[tuple[str, str, str], ...] = ()  # (host, container, mode)
    environment: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "none"
    mem_limit: int | None = None  # bytes
    cpus: float | None = None
    docker_url: str | None = None
    timeout: float | None = None
    mount_code: bool = True
    user: str = NOBODY
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    read_only: bool = True  # the root filesystem
    tmpfs_size: int = 64 << 20  # the writable /tmp
    pids_limit: int = 128
    context: str = "limited"  # or "full"
    quotas: Quotas = field(default_factory=lambda: Quotas())

    def url(self, env: Mapping[str, str] = os.environ) -> str:
        """The engine's address: the option, else ``DOCKER_HOST``, else the local socket."""
        return self.docker_url or env.get("DOCKER_HOST") or DEFAULT_URL


def parse(options: Mapping[str, Any], task_id: str = "?") -> DockerOptions:
    """`options` (a task's handler_kwargs) checked; HandlerError naming a bad or unknown key."""
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise HandlerError(
            f"task {task_id!r}: unknown docker handler option {unknown[0]!r} (known: {', '.join(sorted(KEYS))})"
        )
    where = f"task {task_id!r}: docker handler option"
    image = options.get("image")
    if not isinstance(image, str) or not image:
        raise HandlerError(f"{where} 'image' must be a non-empty string, got {image!r}")
    try:
        return DockerOptions(
            image=image,
            python=_text(where, "python", options.get("python", "python3")),
            gpu=_gpu(where, options.get("gpu", False)),
            volumes=_volumes(where, options.get("volumes") or {}),
            environment=_environment(where, options.get("environment") or {}),
            network_mode=_text(where, "network_mode", options.get("network_mode", "none")),
            mem_limit=_size(where, options.get("mem_limit"), "mem_limit"),
            cpus=None if options.get("cpus") is None else number(f"{where} 'cpus'", options["cpus"], above=True),
            docker_url=None if options.get("docker_url") is None else _text(where, "docker_url", options["docker_url"]),
            timeout=(
                None if options.get("timeout") is None else number(f"{where} 'timeout'", options["timeout"], above=True)
            ),
            mount_code=_flag(where, "mount_code", options.get("mount_code", True)),
            **_sandbox(where, options),
        )
    except (TypeError, ValueError) as exc:
        raise HandlerError(str(exc)) from None


def _sandbox(where: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox's options, each defaulting to the safe one."""
    context = options.get("context", "limited")
    if context not in CONTEXTS:
        raise HandlerError(f"{where} 'context' must be 'limited' or 'full', got {context!r}")
    caps = options.get("cap_add", ())
    if isinstance(caps, str) or not all(isinstance(c, str) and c.isidentifier() for c in caps):
        raise HandlerError(f"{where} 'cap_add' must be a list of capability names like 'NET_BIND_SERVICE'")
    defaults = Quotas()
    quotas = Quotas(
        requests_per_second=number(
            f"{where} 'max_requests_per_second'",
            options.get("max_requests_per_second", defaults.requests_per_second),
            above=True,
        ),
        connections=_count(where, "max_connections", options.get("max_connections", defaults.connections)),
        pending_feedback=_count(
            where, "max_pending_feedback", options.get("max_pending_feedback", defaults.pending_feedback), minimum=0
        ),
        channel_bytes=_size(where, options.get("max_channel_bytes", defaults.channel_bytes), "max_channel_bytes")
        or defaults.channel_bytes,
    )
    return {
        "user": _text(where, "user", options.get("user", NOBODY)),
        "cap_add": tuple(c.upper().removeprefix("CAP_") for c in caps),
        "no_new_privileges": _flag(where, "no_new_privileges", options.get("no_new_privileges", True)),
        "read_only": _flag(where, "read_only", options.get("read_only", True)),
        "tmpfs_size": _size(where, options.get("tmpfs_size", "64m"), "tmpfs_size") or 64 << 20,
        "pids_limit": _count(where, "pids_limit", options.get("pids_limit", 128)),
        "context": context,
        "quotas": quotas,
    }


def _count(where: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HandlerError(f"{where} {name!r} must be a whole number >= {minimum}, got {value!r}")
    return value


def _text(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise HandlerError(f"{where} {name!r} must be a non-empty string, got {value!r}")
    return value


def _flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise HandlerError(f"{where} {name!r} must be True or False, got {value!r}")
    return value


def _gpu(where: str, value: Any) -> bool | int | str:
    """False (none), True or "all" (every GPU), a count, or device ids "0,1"."""
    if isinstance(value, bool) or (isinstance(value, int) and value >= 1) or (isinstance(value, str) and value):
        return value
    raise HandlerError(f"{where} 'gpu' must be True, a count >= 1, 'all' or device ids like '0,1', got {value!r}")


def _volumes(where: str, value: Any) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(value, Mapping):
        raise HandlerError(f"{where} 'volumes' must be a dict, got {type(value).__name__}")
    out = []
    for host, spec in value.items():
        bind: Any
        if not isinstance(host, str) or not host:
            raise HandlerError(f"{where} 'volumes': a host path must be a non-empty string, got {host!r}")
        if isinstance(spec, str):
            bind, mode = spec, "ro"  # read-only unless declared "rw"
        elif isinstance(spec, Mapping) and set(spec) <= {"bind", "mode"}:
            bind, mode = spec.get("bind"), spec.get("mode", "ro")
        else:
            raise HandlerError(f"{where} 'volumes'[{host!r}] must be a path or {{'bind': path, 'mode': 'ro'|'rw'}}")
        if not isinstance(bind, str) or not bind.startswith("/"):
            raise HandlerError(f"{where} 'volumes'[{host!r}]: the container path must be absolute, got {bind!r}")
        if mode not in ("ro", "rw"):
            raise HandlerError(f"{where} 'volumes'[{host!r}]: mode must be 'ro' or 'rw', got {mode!r}")
        out.append((host, bind, mode))
    return tuple(out)


def _environment(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k and "=" not in k for k in value):
        raise HandlerError(f"{where} 'environment' must be a dict of variable names to values")
    return {k: str(v) for k, v in value.items()}


def _size(where: str, value: Any, name: str) -> int | None:
    """Bytes from an int or a text like "512m", "1.5g"."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0:
        raise HandlerError(f"{where} {name!r} must be bytes or a size like '512m', got {value!r}")
    return int(float(match[1]) * _UNITS[match[2].lower()])


# --- the container asked for ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Launch:
    """What one call needs beyond its options."""

    run_id: str
    task_id: str
    call_dir: str  # host path of the per-call directory (read-only inside)
    code_mounts: tuple[tuple[str, str], ...]  # (host path, container path), read-only
    owner: Mapping[str, str] = field(default_factory=dict)  # labels naming the process that owns it
    extra_env: Mapping[str, str] = field(default_factory=dict)


OUT_DIR = "out"  # the only writable part of the call directory: where the reply goes


def container_config(opts: DockerOptions, launch: Launch) -> dict[str, Any]:
    """The Docker Engine API ``containers/create`` body for one call."""
    binds = [f"{launch.call_dir}:{CALL_DIR}:ro", f"{launch.call_dir}/{OUT_DIR}:{CALL_DIR}/{OUT_DIR}:rw"]
    binds += [f"{host}:{inside}:ro" for host, inside in launch.code_mounts]
    binds += [f"{host}:{inside}:{mode}" for host, inside, mode in opts.volumes]
    env = {**opts.environment, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **launch.extra_env}
    if opts.mount_code:
        env["PYTHONPATH"] = f"{LIB_DIR}:{CODE_DIR}"
    config: dict[str, Any] = {
        "Image": opts.image,
        "Cmd": [opts.python, "-s", "-m", "graflow_async.handlers.container", CALL_DIR],
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {**launch.owner, LABEL: launch.run_id, f"{LABEL}.task": launch.task_id},
        "WorkingDir": "/tmp",
        "User": opts.user,
        "HostConfig": host_config(opts, binds),
        "NetworkDisabled": opts.network_mode == "none",
    }
    return config


def host_config(opts: DockerOptions, binds: list[str]) -> dict[str, Any]:
    """Limits and privileges: none beyond what the options declare."""
    config: dict[str, Any] = {
        "Binds": binds,
        "NetworkMode": opts.network_mode,
        "AutoRemove": False,
        "CapDrop": ["ALL"],
        "CapAdd": list(opts.cap_add),
        "SecurityOpt": ["no-new-privileges:true"] if opts.no_new_privileges else [],
        "ReadonlyRootfs": opts.read_only,
        "Tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={opts.tmpfs_size}"},
        "PidsLimit": opts.pids_limit,
        "IpcMode": "private",
    }
    if opts.mem_limit is not None:
        config["Memory"] = opts.mem_limit
        config["MemorySwap"] = opts.mem_limit  # no swap beyond the limit: an OOM kill, not a crawl
    if opts.cpus is not None:
        config["NanoCpus"] = int(opts.cpus * 1e9)
    if opts.gpu is not False:
        config["DeviceRequests"] = [gpu_request(opts.gpu)]
    return config


def gpu_request(gpu: bool | int | str) -> dict[str, Any]:
    """An NVIDIA device request: every GPU, a count, or the listed device ids."""
    request: dict[str, Any] = {"Driver": "nvidia", "Capabilities": [["gpu"]]}
    if gpu is True or gpu == "all":
        request["Count"] = -1
    elif isinstance(gpu, int):
        request["Count"] = gpu
    else:
        request["DeviceIDs"] = [d.strip() for d in str(gpu).split(",") if d.strip()]
    return request
