"""The docker handler's options, checked where a task declares them, and the container
it asks the engine for: pure functions of facts, tested without an engine.

SPEC section 8 lists the keys of ``handler_kwargs``; any other key is a `HandlerError`
naming it, raised by ``@task`` (not at the first run).
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
    }
)
LABEL = "graflow-async"  # every container the handler creates carries it (value: the run id)
CALL_DIR = "/graflow/call"  # the per-call directory inside the container
LIB_DIR = "/graflow/lib"  # graflow_async and what it imports, read-only
CODE_DIR = "/graflow/code"  # the task's own module, read-only
DEFAULT_URL = "unix:///var/run/docker.sock"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


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
            mem_limit=_size(where, options.get("mem_limit")),
            cpus=None if options.get("cpus") is None else number(f"{where} 'cpus'", options["cpus"], above=True),
            docker_url=None if options.get("docker_url") is None else _text(where, "docker_url", options["docker_url"]),
            timeout=(
                None if options.get("timeout") is None else number(f"{where} 'timeout'", options["timeout"], above=True)
            ),
            mount_code=_flag(where, "mount_code", options.get("mount_code", True)),
        )
    except (TypeError, ValueError) as exc:
        raise HandlerError(str(exc)) from None


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
            bind, mode = spec, "rw"
        elif isinstance(spec, Mapping) and set(spec) <= {"bind", "mode"}:
            bind, mode = spec.get("bind"), spec.get("mode", "rw")
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


def _size(where: str, value: Any) -> int | None:
    """Bytes from an int or a text like "512m", "1.5g"."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0:
        raise HandlerError(f"{where} 'mem_limit' must be bytes or a size like '512m', got {value!r}")
    return int(float(match[1]) * _UNITS[match[2].lower()])


# --- the container asked for ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Launch:
    """What one call needs beyond its options."""

    run_id: str
    task_id: str
    call_dir: str  # host path of the per-call directory
    code_mounts: tuple[tuple[str, str], ...]  # (host path, container path), read-only
    user: str | None = None  # "uid:gid" on a POSIX host
    extra_env: Mapping[str, str] = field(default_factory=dict)


def container_config(opts: DockerOptions, launch: Launch) -> dict[str, Any]:
    """The Docker Engine API ``containers/create`` body for one call."""
    binds = [f"{launch.call_dir}:{CALL_DIR}:rw"]
    binds += [f"{host}:{inside}:ro" for host, inside in launch.code_mounts]
    binds += [f"{host}:{inside}:{mode}" for host, inside, mode in opts.volumes]
    env = {**opts.environment, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **launch.extra_env}
    if opts.mount_code:
        env["PYTHONPATH"] = f"{LIB_DIR}:{CODE_DIR}"
    host_config: dict[str, Any] = {"Binds": binds, "NetworkMode": opts.network_mode, "AutoRemove": False}
    if opts.mem_limit is not None:
        host_config["Memory"] = opts.mem_limit
        host_config["MemorySwap"] = opts.mem_limit  # no swap beyond the limit: an OOM kill, not a crawl
    if opts.cpus is not None:
        host_config["NanoCpus"] = int(opts.cpus * 1e9)
    if opts.gpu is not False:
        host_config["DeviceRequests"] = [gpu_request(opts.gpu)]
    config: dict[str, Any] = {
        "Image": opts.image,
        "Cmd": [opts.python, "-s", "-m", "graflow_async.handlers.container", CALL_DIR],
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {LABEL: launch.run_id, f"{LABEL}.task": launch.task_id},
        "WorkingDir": CALL_DIR,
        "HostConfig": host_config,
        "NetworkDisabled": opts.network_mode == "none",
    }
    if launch.user:
        config["User"] = launch.user
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
