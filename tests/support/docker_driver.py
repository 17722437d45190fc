"""A driver process for the orphan test: runs one long docker task, to be SIGKILLed.

python -m docker_driver <engine url> <image> <python> <run id> <marks dir>
"""

from __future__ import annotations

import asyncio
import sys

import docker_flows as df

from graflow_async import run, workflow
from graflow_async.define.tasks import Task


async def main(url: str, image: str, python: str, run_id: str, marks: str) -> None:
    df.configure(url, image, python)
    volumes = {**df.nap.handler_kwargs["volumes"], marks: {"bind": "/marks", "mode": "rw"}}
    nap = Task(df.nap.func, id="nap", handler="docker", handler_kwargs={**df.nap.handler_kwargs, "volumes": volumes})
    with workflow("orphan") as wf:
        wf.add(nap(task_id="nap", seconds=300, marker="/marks/started"))
    await run(wf, run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
