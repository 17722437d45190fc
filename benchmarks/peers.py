"""The peers' virtualenvs: ``benchmarks/.venvs/<peer>``, created on first use.

Each peer runs in its own interpreter, with pinned versions, so that its dependencies
never meet ours: ``python3 -m venv`` then ``pip install`` of `Peer.requirements`. A
stamp file records what was installed; a venv whose stamp differs is installed again.
Peer scenario scripts (``benchmarks.bench_<peer>``) run with the peer's interpreter,
in a temp directory (Graflow writes ``feedback_data/`` and ``checkpoints/`` under the
working directory) with the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import ROOT

VENVS = ROOT / "benchmarks" / ".venvs"


@dataclass(frozen=True)
class Peer:
    name: str
    requirements: tuple[str, ...]
    distributions: tuple[str, ...]  # whose versions go into the results

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


PEERS = {
    # Graflow's Redis workers need redis-py; Graflow 0.2.0 does not pin it.
    "graflow": Peer("graflow", ("graflow==0.2.0", "redis==8.1.0"), ("graflow", "redis")),
    "langgraph": Peer("langgraph", ("langgraph==1.2.24",), ("langgraph", "langgraph-checkpoint", "langchain-core")),
}


def ensure(peer: Peer) -> Path:
    """The peer's interpreter, after creating or updating its venv if needed."""
    stamp = peer.venv / ".bench-installed"
    wanted = "\n".join(peer.requirements)
    if peer.python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return peer.python
    print(f"creating {peer.venv.relative_to(ROOT)} ({', '.join(peer.requirements)}) ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(peer.venv)], check=True)
    subprocess.run(
        [str(peer.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *peer.requirements],
        check=True,
    )
    stamp.write_text(wanted)
    return peer.python


@cache
def versions(peer: Peer) -> dict[str, str]:
    """Installed versions of the peer's distributions and its Python."""
    code = (
        "import importlib.metadata as m, json, platform, sys; "
        "print(json.dumps({**{d: m.version(d) for d in sys.argv[1:]}, 'python': platform.python_version()}))"
    )
    out = subprocess.run(
        [str(ensure(peer)), "-c", code, *peer.distributions], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out))


def environment() -> dict[str, str]:
    """The environment of a peer process: the repository importable, logs quiet."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), "PYTHONWARNINGS": "ignore"}
