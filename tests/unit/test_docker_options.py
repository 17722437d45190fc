"""The docker handler's options and the container it asks for, as pure functions (no engine)."""

from __future__ import annotations

import sys

import pytest

from graflow_async import HandlerError
from graflow_async.define.docker_options import Launch, container_config, gpu_request, parse
from graflow_async.handlers.code_mounts import MAIN_ALIAS, function_ref, library_mounts


def launch(**extra: object) -> Launch:
    return Launch(
        run_id="run-1",
        task_id="t",
        call_dir="/tmp/call",
        code_mounts=(("/src/lib", "/graflow/lib/x"),),
        owner={"graflow-async.owner.pid": "42"},
        **extra,
    )  # type: ignore[arg-type]


def test_defaults_are_a_sandbox_no_network_read_only_mounts_and_labels() -> None:
    config = container_config(parse({"image": "python:3.11"}), launch())
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none" and config["NetworkDisabled"] is True
    assert host["Binds"] == [
        "/tmp/call:/graflow/call:ro",  # the call directory: read-only but for its out/
        "/tmp/call/out:/graflow/call/out:rw",
        "/src/lib:/graflow/lib/x:ro",
    ]
    assert config["Labels"] == {
        "graflow-async.owner.pid": "42",
        "graflow-async": "run-1",
        "graflow-async.task": "t",
    }
    assert config["Cmd"][:2] == ["python3", "-s"] and config["Cmd"][-1] == "/graflow/call"
    assert "Memory" not in host and "NanoCpus" not in host and "DeviceRequests" not in host
    assert config["User"] == "65534:65534"
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == []
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True and host["PidsLimit"] == 128
    assert host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,noexec,size={64 << 20}"}


def test_each_sandbox_option_opens_what_it_names() -> None:
    opts = parse(
        {
            "image": "img",
            "user": "1000:1000",
            "cap_add": ["net_bind_service", "CAP_CHOWN"],
            "no_new_privileges": False,
            "read_only": False,
            "tmpfs_size": "1g",
            "pids_limit": 4096,
            "context": "full",
            "max_requests_per_second": 5,
            "max_connections": 2,
            "max_pending_feedback": 0,
            "max_channel_bytes": "1m",
        }
    )
    config = container_config(opts, launch())
    host = config["HostConfig"]
    assert config["User"] == "1000:1000" and host["CapAdd"] == ["NET_BIND_SERVICE", "CHOWN"]
    assert host["SecurityOpt"] == [] and host["ReadonlyRootfs"] is False and host["PidsLimit"] == 4096
    assert host["Tmpfs"]["/tmp"].endswith(f"size={1 << 30}")
    assert opts.context == "full"
    q = opts.quotas
    assert (q.requests_per_second, q.connections, q.pending_feedback, q.channel_bytes) == (5.0, 2, 0, 1 << 20)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("context", "everything"),
        ("cap_add", "ALL"),
        ("cap_add", ["not a cap"]),
        ("pids_limit", 0),
        ("pids_limit", True),
        ("read_only", "yes"),
        ("max_connections", 0),
        ("max_requests_per_second", -1),
        ("max_channel_bytes", "lots"),
        ("tmpfs_size", 0),
        ("user", ""),
    ],
)
def test_bad_sandbox_options_are_refused_naming_them(key: str, value: object) -> None:
    with pytest.raises(HandlerError, match=key):
        parse({"image": "img", key: value})


def test_every_option_reaches_the_container() -> None:
    opts = parse(
        {
            "image": "img",
            "python": "/opt/py/bin/python",
            "gpu": 2,
            "environment": {"A": 1},
            "volumes": {"/data": "/in", "/out": {"bind": "/out", "mode": "rw"}, "/cfg": {"bind": "/cfg", "mode": "ro"}},
            "network_mode": "bridge",
            "mem_limit": "1.5g",
            "cpus": 1.5,
            "docker_url": "tcp://h:2375",
            "timeout": 30,
            "mount_code": False,
        }
    )
    config = container_config(opts, launch())
    host = config["HostConfig"]
    assert host["Binds"][3:] == ["/data:/in:ro", "/out:/out:rw", "/cfg:/cfg:ro"]
    assert host["Memory"] == host["MemorySwap"] == int(1.5 * (1 << 30))
    assert host["NanoCpus"] == 1_500_000_000 and host["NetworkMode"] == "bridge"
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": 2}]
    assert "A=1" in config["Env"] and not any(e.startswith("PYTHONPATH=") for e in config["Env"])
    assert config["Cmd"][0] == "/opt/py/bin/python" and opts.timeout == 30.0
    assert opts.url({"DOCKER_HOST": "unix:///other"}) == "tcp://h:2375"


def test_the_engine_address_defaults_to_docker_host_then_the_local_socket() -> None:
    opts = parse({"image": "img"})
    assert opts.url({"DOCKER_HOST": "unix:///run/x.sock"}) == "unix:///run/x.sock"
    assert opts.url({}) == "unix:///var/run/docker.sock"


def test_gpu_requests() -> None:
    assert gpu_request(True)["Count"] == -1 and gpu_request("all")["Count"] == -1
    assert gpu_request("0, 2")["DeviceIDs"] == ["0", "2"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"image": "i", "privileged": True}, "'privileged'"),
        ({"image": ""}, "'image'"),
        ({"image": "i", "mem_limit": "-5m"}, "mem_limit"),
        ({"image": "i", "mem_limit": True}, "mem_limit"),
        ({"image": "i", "cpus": 0}, "cpus"),
        ({"image": "i", "timeout": float("inf")}, "timeout"),
        ({"image": "i", "gpu": 0}, "gpu"),
        ({"image": "i", "volumes": {"/a": "relative"}}, "absolute"),
        ({"image": "i", "volumes": {"/a": {"bind": "/a", "mode": "rwx"}}}, "mode"),
        ({"image": "i", "volumes": ["/a:/a"]}, "volumes"),
        ({"image": "i", "environment": {"A=B": "1"}}, "environment"),
        ({"image": "i", "mount_code": "yes"}, "mount_code"),
    ],
)
def test_bad_options_are_handler_errors_naming_them(options: dict[str, object], named: str) -> None:
    with pytest.raises(HandlerError, match=named):
        parse(options, "t")


def test_the_library_mounts_hold_what_graflow_async_imports() -> None:
    names = {inside.rsplit("/", 1)[1] for _, inside in library_mounts()}
    assert {"graflow_async", "msgpack", "structlog", "rich", "watchfiles", "prometheus_client"} <= names
    assert not any(n.endswith((".dist-info", ".pth")) for n in names)
    assert "aiodocker" not in names and "redis" not in names  # extras stay out


def test_only_module_level_functions_can_run_elsewhere() -> None:
    def nested() -> None: ...

    with pytest.raises(HandlerError, match="module-level"):
        function_ref(nested)
    assert function_ref(sys.exit) == "sys:exit"
    main = type(nested)(nested.__code__, {"__name__": "__main__"})
    main.__module__ = "__main__"
    main.__qualname__ = "job"
    assert function_ref(main) == f"{MAIN_ALIAS}:job"
