"""Hosts apart: network namespaces joined by veth pairs, for tests that need Redis,
workers and a run on separate "hosts" whose links they can cut.

`Topology(["redis", "w1", "w2", "run"])` makes one namespace per host and a hub
namespace holding a bridge; each host has ``lo`` and one veth end, ``eth0``, with an
address of a /24; the other end is a port of the bridge, named after the host:

    <prefix>-hub     br0 ─┬─ redis ══ eth0 10.A.B.1   <prefix>-redis
                          ├─ w1    ══ eth0 10.A.B.2   <prefix>-w1
                          └─ ...

Names carry a random suffix and the subnet is random, so the topologies of concurrent
tests never meet (and nothing connects them to the root namespace). `cut(host)` takes
the hub end of the host's veth down: the host's link loses carrier and its packets are
dropped, so its TCP connections stall (no reset) until `restore(host)`, after which
TCP retransmits and carries on. `popen(host, cmd)` runs a command inside a host
(``ip netns exec`` execs it: the Popen's pid is the command's). `close()` kills the
processes started here and any still inside the namespaces, then deletes the
namespaces (their veths go with them), whatever state the test left. Root only,
with iproute2's ``ip``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_IP_TIMEOUT = 10.0
_NAME = re.compile(r"[a-z][a-z0-9]{0,7}")  # a host's name is its veth's name in the hub (<= 15 chars)
_CONNECTS = """
import socket, sys, time
address, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""


def ip_command() -> str | None:
    """The path of iproute2's ``ip``, or None."""
    return shutil.which("ip", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # short: also the name of its veth end in the hub
    netns: str
    address: str


class Topology:
    """Hosts in namespaces of their own around a hub bridge (see the module docstring)."""

    def __init__(self, hosts: Sequence[str]) -> None:
        for name in hosts:
            if not _NAME.fullmatch(name) or name == "br0":
                raise ValueError(f"host name {name!r}: lowercase letters and digits, at most 8")
        if len(set(hosts)) != len(hosts) or not 1 <= len(hosts) <= 250:
            raise ValueError(f"host names must be distinct, 1 to 250 of them: {hosts!r}")
        ip = ip_command()
        if ip is None:
            raise RuntimeError("iproute2's `ip` is missing (`make install` installs it)")
        self.ip = ip
        prefix = f"gft{secrets.token_hex(3)}"
        subnet = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
        self.hub = f"{prefix}-hub"
        self.hosts = {name: Host(name, f"{prefix}-{name}", f"{subnet}.{i}") for i, name in enumerate(hosts, start=1)}
        self._processes: list[subprocess.Popen[Any]] = []

    @property
    def namespaces(self) -> list[str]:
        return [self.hub, *(h.netns for h in self.hosts.values())]

    def create(self) -> None:
        """Make the namespaces, the bridge and the links (raise if `ip` refuses; call `close` anyway)."""
        self._ip("netns", "add", self.hub)
        self._ip("-n", self.hub, "link", "set", "dev", "lo", "up")
        self._ip("-n", self.hub, "link", "add", "name", "br0", "type", "bridge")
        self._ip("-n", self.hub, "link", "set", "dev", "br0", "up")
        for host in self.hosts.values():
            self._ip("netns", "add", host.netns)
            self._ip("-n", host.netns, "link", "set", "dev", "lo", "up")
            self._ip(
                "-n",
                self.hub,
                "link",
                "add",
                "name",
                host.name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            )
            self._ip("-n", self.hub, "link", "set", "dev", host.name, "master", "br0")
            self._ip("-n", self.hub, "link", "set", "dev", host.name, "up")
            self._ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            self._ip("-n", host.netns, "link", "set", "dev", "eth0", "up")

    def address(self, host: str) -> str:
        return self.hosts[host].address

    def cut(self, host: str) -> None:
        """Take `host`'s link down at the hub: its traffic stalls (nothing is reset)."""
        self._ip("-n", self.hub, "link", "set", "dev", self.hosts[host].name, "down")

    def restore(self, host: str) -> None:
        self._ip("-n", self.hub, "link", "set", "dev", self.hosts[host].name, "up")

    def command(self, host: str, cmd: Sequence[str]) -> list[str]:
        """`cmd` run inside `host`."""
        return [self.ip, "netns", "exec", self.hosts[host].netns, *cmd]

    def popen(self, host: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `cmd` inside `host`; `close` kills it if it still runs."""
        process: subprocess.Popen[Any] = subprocess.Popen(self.command(host, cmd), **kwargs)
        self._processes.append(process)
        return process

    def connects(self, host: str, address: str, port: int, timeout: float) -> bool:
        """Whether a TCP connection from `host` to `address:port` succeeds within `timeout`."""
        probe = subprocess.run(
            self.command(host, [sys.executable, "-c", _CONNECTS, address, str(port), str(timeout)]),
            capture_output=True,
            timeout=timeout + 10,
        )
        return probe.returncode == 0

    def close(self) -> None:
        """Kill what runs inside, delete the namespaces. Safe to call twice or after a failed `create`."""
        for process in reversed(self._processes):  # last started first: clients before their server
            if process.poll() is None:
                process.kill()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for netns in self.namespaces:
            # Processes inside these private namespaces were all started by this topology
            # (a child a command forked, say): they go too.
            listed = subprocess.run([self.ip, "netns", "pids", netns], capture_output=True, text=True)
            for pid in listed.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run([self.ip, "netns", "delete", netns], capture_output=True)

    def _ip(self, *args: str) -> None:
        done = subprocess.run([self.ip, *args], capture_output=True, text=True, timeout=_IP_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
