"""A workflow the resume-safety tests run in separate processes: `charge` saves a
checkpoint, then (when resumed) takes `GFT_CHARGE_SECONDS` and appends a line to the
file `GFT_CHARGES` - the card charged."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from graflow_async import task, workflow


@task(inject_context=True)
async def charge(context: Any) -> str:
    if context.resumed_metadata is None:
        await context.checkpoint(metadata={"step": "before charging"})
        raise RuntimeError("crashed before charging")
    await asyncio.sleep(float(os.environ.get("GFT_CHARGE_SECONDS", "0")))
    with open(os.environ["GFT_CHARGES"], "a") as f:
        f.write(f"{os.getpid()}\n")
    return "charged"


@task
async def receipt(charge: str) -> str:
    return f"receipt for {charge}"


with workflow("payment") as payment:
    charge >> receipt
