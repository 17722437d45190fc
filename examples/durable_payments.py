"""Durable payments: the process driving a payment is killed mid-charge; another carries it on.

    reserve >> charge >> (receipt | ship) >> close

- the run is durable (`run(..., durable=True)`): it journals each task's result beside
  its checkpoints before acting on it, and holds a lease on the run while it lives;
- `charge` calls a (fake) payment gateway with `context.idempotency_key`
  (``"<run_id>/charge/1"``, the same for every attempt and every takeover); the gateway
  keeps one charge per key in ``ledger.json``, so a key it has seen gets the first
  charge back and the card is not charged again;
- `main()` starts the driver as a subprocess and SIGKILLs it while `charge` waits for the
  gateway's answer (the card is charged, the task has not returned), then calls
  `recover(run_id)`: `reserve`, journaled, does not run again; `charge` does (at-least-once),
  and the gateway knows its key; `receipt`, `ship` and `close` run in this process.

Run it with ``python examples/durable_payments.py`` (state in a temporary directory,
removed at the end). By hand: ``python examples/durable_payments.py drive RUN_ID DIR``,
kill it, then ``PYTHONPATH=examples graflow-async recover RUN_ID --checkpoint-store DIR/checkpoints``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from graflow_async import TaskContext, recover, run, task, workflow

ORDER = {"id": "A-1042", "items": 2, "card": "tok_visa_4242", "amount": "36.00 EUR"}
WHO = "driver" if sys.argv[1:2] == ["drive"] else "recover"  # which process prints a line


def gateway_charge(state: Path, card: str, amount: str, key: str) -> dict:
    """The fake payment gateway: one charge per idempotency key, kept in ledger.json."""
    path = state / "ledger.json"
    ledger = json.loads(path.read_text()) if path.exists() else {}
    if key in ledger:
        print(f"[{WHO}] gateway: key {key} seen before: returns {ledger[key]['id']}, card not charged again")
        return ledger[key]
    ledger[key] = {"id": f"ch_{len(ledger) + 1}", "card": card, "amount": amount}
    path.write_text(json.dumps(ledger))
    print(f"[{WHO}] gateway: charged {card} {amount} as {ledger[key]['id']} (key {key})")
    return ledger[key]


def slow_answer(state: Path) -> None:
    """The gateway answers slowly in the driver (main() kills it meanwhile), at once after."""
    (state / "charged").touch()  # tells main() the card is charged
    if WHO == "driver":
        time.sleep(30)


@task(inject_context=True)
async def reserve(context: TaskContext) -> dict:
    order = await context.channel.get("order")
    print(f"[{WHO}] reserve: {order['items']} items held for order {order['id']}")
    return order


@task(inject_context=True)
async def charge(context: TaskContext, reserve: dict) -> dict:
    state = Path(await context.channel.get("state"))
    print(f"[{WHO}] charge: attempt {context.attempt}, idempotency key {context.idempotency_key}")
    paid = await asyncio.to_thread(gateway_charge, state, reserve["card"], reserve["amount"], context.idempotency_key)
    await asyncio.to_thread(slow_answer, state)
    return paid


@task
async def receipt(reserve: dict, charge: dict) -> str:
    print(f"[{WHO}] receipt: {charge['amount']} paid by {charge['card']} ({charge['id']}) for {reserve['id']}")
    return f"receipt-{reserve['id']}"


@task
async def ship(reserve: dict) -> str:
    print(f"[{WHO}] ship: {reserve['items']} items of order {reserve['id']} handed to the carrier")
    return f"TRK-{reserve['id']}"


@task
async def close(charge: dict, receipt: str, ship: str) -> str:
    return f"order closed: {charge['id']}, {receipt}, {ship}"


with workflow("payment") as WORKFLOW:
    reserve >> charge >> (receipt | ship) >> close


async def drive(run_id: str, state: Path) -> None:
    """The driver: starts the durable run (the process main() kills)."""
    flow = importlib.import_module("durable_payments").WORKFLOW  # recorded as durable_payments:WORKFLOW
    channel = {"state": str(state), "order": ORDER}
    store = state / "checkpoints"
    # owner_lease=2: recover takes over 2 s after the dead driver's last renewal (default 10 s)
    await run(flow, run_id=run_id, durable=True, checkpoint_store=store, initial_channel=channel, owner_lease=2)


async def main(state: Path) -> None:
    run_id = f"pay-{uuid.uuid4().hex[:8]}"
    print(f"== a driver process starts durable run {run_id} ==", flush=True)
    driver = await asyncio.create_subprocess_exec(sys.executable, "-u", __file__, "drive", run_id, str(state))
    try:
        while not (state / "charged").exists():
            if driver.returncode is not None:
                raise SystemExit("the driver ended before charging")
            await asyncio.sleep(0.02)
    finally:
        if driver.returncode is None:
            driver.send_signal(signal.SIGKILL)  # the card is charged; charge's result is not journaled
        await driver.wait()
    print(f"!! driver (pid {driver.pid}) killed while charge waits for the gateway\n\n== recover {run_id} ==")
    # The run recorded its workflow as durable_payments:WORKFLOW; recover imports it (or give workflow=).
    result = await recover(run_id, checkpoint_store=state / "checkpoints")
    print(f"\n== run {run_id}: {result.status}; close -> {result.output!r} ==")
    ledger = json.loads((state / "ledger.json").read_text())
    print(f"gateway ledger: {len(ledger)} charge(s)")
    for key, paid in ledger.items():
        print(f"  {key}: {paid['id']} {paid['card']} {paid['amount']}")
    print("the card was charged once" if len(ledger) == 1 else f"!! the card was charged {len(ledger)} times")


if __name__ == "__main__":
    if WHO == "driver":
        Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
        asyncio.run(drive(sys.argv[2], Path(sys.argv[3])))
    else:
        with tempfile.TemporaryDirectory(prefix="durable_payments-") as tmp:
            asyncio.run(main(Path(tmp)))
