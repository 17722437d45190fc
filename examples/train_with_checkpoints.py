"""Training with checkpoints: crash in the middle, resume, carry on from the saved epoch.

    load_data >> train >> evaluate

- `train` runs `EPOCHS` epochs of a (fake) model whose loss goes down; every
  `CHECKPOINT_EVERY` epochs it saves the run with ``{"epoch": n, "loss": x}``;
- on the first run the training "crashes" at epoch `CRASH_AT_EPOCH` (as if the machine
  had gone away), after the checkpoint of epoch 6;
- `main()` finds the run's latest checkpoint in the store and resumes it: `load_data`
  does not run again, and `train` picks up at the epoch after the saved one, with the
  saved loss, instead of starting again from epoch 1.

Run it with ``python examples/train_with_checkpoints.py`` (checkpoints go to
``.graflow/checkpoints`` in the current directory; ``--store DIR`` puts them elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import uuid
from collections import Counter
from pathlib import PurePosixPath

from graflow_async import TaskFailedError, WorkflowResult, resume, run, task, workflow
from graflow_async.checkpoints import load_checkpoint, open_store

EPOCHS = 10
CHECKPOINT_EVERY = 3
CRASH_AT_EPOCH = 8

#: The epoch at which `train` crashes; `main()` sets it for the first run only, so a
#: resumed run (here, or ``python -m graflow_async resume``) trains to the end.
crash_at_epoch: int | None = None
runs: Counter[str] = Counter()  # how many times each task ran in this process


class MachineLost(RuntimeError):
    """The simulated crash."""


def fake_loss(epoch: int) -> float:
    return round(0.05 + 0.9 * math.exp(-epoch / 4), 4)


@task
async def load_data() -> dict:
    runs["load_data"] += 1
    await asyncio.sleep(0.05)  # reading the data set is slow: not something to redo
    print("load_data: 60,000 samples, 784 features")
    return {"samples": 60_000, "features": 784}


@task(inject_context=True)
async def train(context, load_data: dict) -> dict:
    runs["train"] += 1
    saved = context.resumed_metadata
    if saved is None:
        first, loss = 1, None
        print(f"train: starting from scratch on {load_data['samples']:,} samples")
    else:
        first, loss = saved["epoch"] + 1, saved["loss"]
        print(
            f"train: resumed from the checkpoint of epoch {saved['epoch']} (loss {loss}), continuing at epoch {first}"
        )
    for epoch in range(first, EPOCHS + 1):
        await asyncio.sleep(0.01)  # one epoch of "work"
        loss = fake_loss(epoch)
        line = f"  epoch {epoch:2}/{EPOCHS}  loss {loss:.4f}"
        if epoch % CHECKPOINT_EVERY == 0:
            location = await context.checkpoint(metadata={"epoch": epoch, "loss": loss})
            line += f"  -> checkpoint {PurePosixPath(location).name}"
        print(line)
        if epoch == crash_at_epoch:
            raise MachineLost(f"the GPU node went away during epoch {epoch}")
    return {"epochs": EPOCHS, "first_epoch_this_run": first, "final_loss": loss}


@task
async def evaluate(train: dict) -> dict:
    runs["evaluate"] += 1
    accuracy = round(1 - train["final_loss"] / 2, 4)
    print(f"evaluate: accuracy {accuracy:.2%} after {train['epochs']} epochs")
    return {"accuracy": accuracy, "final_loss": train["final_loss"]}


with workflow("training") as training:
    load_data >> train >> evaluate


async def latest_checkpoint(store_spec: str | None, run_id: str) -> str:
    """The run's checkpoint with the highest sequence number (``<n>.ckpt``) in the store."""
    async with open_store(store_spec) as store:
        locations = await store.list(f"{run_id}/")
    if not locations:
        raise SystemExit(f"no checkpoint of run {run_id} in the store")
    return max(locations, key=lambda loc: int(PurePosixPath(loc).stem))


async def main(store: str | None = None) -> WorkflowResult:
    global crash_at_epoch
    run_id = f"train-{uuid.uuid4().hex[:8]}"
    print(
        f"== first run {run_id}: {EPOCHS} epochs, a checkpoint every {CHECKPOINT_EVERY}, "
        f"a crash at epoch {CRASH_AT_EPOCH} =="
    )
    crash_at_epoch = CRASH_AT_EPOCH
    try:
        await run(training, run_id=run_id, checkpoint_store=store)
    except TaskFailedError as exc:
        print(f"!! crashed: {exc}")
    else:
        raise SystemExit("the first run was supposed to crash")
    finally:
        crash_at_epoch = None

    location = await latest_checkpoint(store, run_id)
    saved = await load_checkpoint(location)
    print(f"\n== latest checkpoint: {location}")
    print(f"   saved by {saved['task_id']!r} with {saved['metadata']}; completed: {saved['completed']} ==")

    print("\n== resuming ==")
    result = await resume(location, workflow=training)
    print(f"\n== run {result.run_id}: {result.status}; evaluate -> {result.output} ==")
    trained = result.results["train"]
    print(
        f"resumed from epoch {saved['metadata']['epoch']}: trained epochs "
        f"{trained['first_epoch_this_run']}-{trained['epochs']} after the crash, not 1-{EPOCHS}; "
        f"load_data ran {runs['load_data']} time(s), train {runs['train']} time(s)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", help="checkpoint store (directory or s3://bucket/prefix); default .graflow/checkpoints"
    )
    asyncio.run(main(parser.parse_args().store))
