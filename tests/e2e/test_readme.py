"""Every Python block of README.md runs, in order, in one namespace, in a fresh process
(with a real redis-server, a worker, moto's S3 and a local webhook), so the docs cannot rot.

Hidden ``<!-- readme-test ... -->`` comments in README.md run at their place too: they
define what an excerpt leaves out and check what a block did. A block with top-level
``await`` runs in its own event loop; tracebacks point at README.md's own lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from services import S3Service
from worker_processes import PYTHONPATH, Workers

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_PIECE = re.compile(r"^```python\n(?P<block>.*?)^```$|^<!-- readme-test\n(?P<hidden>.*?)^-->$", re.S | re.M)

RUNNER = """
import ast, asyncio, inspect, json, os, sys
namespace = {"__name__": "__readme__", "asyncio": asyncio, "os": os}
for line, kind, source in json.load(open(sys.argv[1])):
    code = compile("\\n" * (line - 1) + source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
    print(f"README {kind} at line {line}: ok", flush=True)
"""


def pieces(text: str) -> list[tuple[int, str, str]]:
    """(first line, "block" or "hidden", source) of every Python block and hidden test."""
    found = []
    for match in _PIECE.finditer(text):
        kind = "block" if match["block"] is not None else "hidden"
        source = match[kind]
        found.append((text.count("\n", 0, match.start(kind)) + 1, kind, source))
    return found


def test_the_readme_has_its_blocks_found() -> None:
    text = README.read_text()
    found = pieces(text)
    blocks = [p for p in found if p[1] == "block"]
    assert len(blocks) == text.count("```python\n") and len(blocks) >= 9
    assert [p for p in found if p[1] == "hidden"]


@pytest.fixture
async def webhook() -> object:
    """A local HTTP endpoint for the README's Slack notification."""
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/deploy", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hooks/deploy", received
    finally:
        await runner.cleanup()


async def test_every_python_block_of_the_readme_runs(
    tmp_path: Path, redis_url: str, s3_service: S3Service, workers: Workers, webhook: object
) -> None:
    import asyncio
    import json

    url, received = webhook  # type: ignore[misc]
    workers.start(1)
    found = pieces(README.read_text())
    (tmp_path / "pieces.json").write_text(json.dumps(found))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "REDIS_URL": redis_url,
        "README_WEBHOOK": url,
        "AWS_ENDPOINT_URL": s3_service.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_service.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_service.aws_secret_access_key,
        "AWS_DEFAULT_REGION": s3_service.region_name,
    }
    env.pop("GRAFLOW_CHECKPOINT_KEY", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(tmp_path / "runner.py"),
        str(tmp_path / "pieces.json"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(process.communicate(), 50))[0].decode(errors="replace")
    assert process.returncode == 0, output[-6000:]
    ran = [line for line in output.splitlines() if line.startswith("README ") and line.endswith(": ok")]
    assert len(ran) == len(found), output[-6000:]
    assert '"name": "run fan"' in output  # the trace block's console exporter printed the run's span
    assert received and b"deploy waiting" in received[0]  # the Slack notification reached the hook
