"""`resume()` is safe to call twice (SPEC 8): a run that has completed is not run again
unless forced, and of two concurrent resumes of one run through a shared store, one
runs and the other raises CheckpointError ("already running")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import resume_flows
from clocks import FastClock
from services import S3Service
from worker_processes import PYTHONPATH, ROOT

from graflow_async import CheckpointError, resume, run
from graflow_async.checkpoints import CheckpointStore, FileCheckpointStore, S3CheckpointStore, runlock
from graflow_async.clock import use_clock
from graflow_async.exceptions import RunAlreadyRunningError, RunCompletedError


async def crashed(tmp_path: Path) -> str:
    """Run the payment workflow until it crashes after its checkpoint; the location."""
    with pytest.raises(Exception, match="crashed before charging"):
        await run(resume_flows.payment, run_id="pay-1", checkpoint_store=str(tmp_path / "ckpt"))
    [location] = (tmp_path / "ckpt" / "pay-1").glob("*.ckpt")
    return str(location)


@pytest.fixture
def charges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "charges.txt"
    monkeypatch.setenv("GFT_CHARGES", str(path))
    return path


def charged(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


async def test_a_completed_run_is_not_resumed_again_unless_forced(tmp_path: Path, charges: Path) -> None:
    location = await crashed(tmp_path)
    first = await resume(location)
    assert first.output == "receipt for charged" and charged(charges) == 1
    with pytest.raises(RunCompletedError, match="pay-1 has completed since") as refused:
        await resume(location)
    assert isinstance(refused.value, CheckpointError) and refused.value.run_id == "pay-1"
    assert "force=True" in str(refused.value) and charged(charges) == 1
    again = await resume(location, force=True)
    assert again.status == "completed" and charged(charges) == 2


async def test_a_run_that_saved_checkpoints_and_completed_refuses_them(tmp_path: Path) -> None:
    from graflow_async import task, workflow

    @task(inject_context=True)
    async def step(context) -> str:
        return await context.checkpoint() if context.resumed_metadata is None else "again"

    with workflow("once") as wf:
        wf.add(step)
    result = await run(wf, checkpoint_store=tmp_path)
    with pytest.raises(CheckpointError, match="has completed since"):
        await resume(result.output, workflow=wf)


async def test_concurrent_resumes_in_one_process_run_once(
    tmp_path: Path, charges: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GFT_CHARGE_SECONDS", "0.5")
    location = await crashed(tmp_path)
    outcomes = await asyncio.gather(resume(location), resume(location), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], RunAlreadyRunningError), outcomes
    assert isinstance(errors[0], CheckpointError) and errors[0].run_id == "pay-1"
    assert "already running" in str(errors[0])
    assert charged(charges) == 1
    assert not list((tmp_path / "ckpt" / "pay-1").glob("lease*"))  # released


def resume_process(location: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "graflow_async", "resume", location, "--no-progress"],
        env={**os.environ, **env, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def two_resumes(location: str, env: dict[str, str], charges: Path) -> None:
    """Two processes resume `location` at once: one runs, the other says it is running."""
    processes = [resume_process(location, env) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in processes]
    assert sorted(p.returncode for p in processes) == [0, 1], outputs
    refused = next(out for p, out in zip(processes, outputs, strict=True) if p.returncode == 1)
    assert "already running" in refused
    assert charged(charges) == 1  # charged once


async def test_two_processes_resuming_one_run_through_a_shared_directory(tmp_path: Path, charges: Path) -> None:
    two_resumes(await crashed(tmp_path), {"GFT_CHARGE_SECONDS": "1.5"}, charges)


async def test_two_processes_resuming_one_run_through_a_shared_bucket(
    s3_service: S3Service, s3_bucket: str, charges: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "GFT_CHARGE_SECONDS": "1.5",
        "AWS_ENDPOINT_URL": s3_service.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_service.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_service.aws_secret_access_key,
        "AWS_DEFAULT_REGION": s3_service.region_name,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(Exception, match="crashed before charging"):
        await run(resume_flows.payment, run_id="pay-1", checkpoint_store=f"s3://{s3_bucket}/runs")
    two_resumes(f"s3://{s3_bucket}/runs/pay-1/1.ckpt", env, charges)


async def test_a_lapsed_or_corrupt_lease_is_taken_over(tmp_path: Path, charges: Path) -> None:
    location = await crashed(tmp_path)
    lease = tmp_path / "ckpt" / "pay-1" / LEASE_1
    lease.write_text(json.dumps({"holder": "gone:1", "expires": time.time() - 1}))
    assert (await resume(location)).status == "completed"
    assert not list(lease.parent.glob("lease*"))

    location2 = await crashed(tmp_path / "second")
    lease2 = tmp_path / "second" / "ckpt" / "pay-1" / LEASE_1
    lease2.write_bytes(b"\x00not json")
    assert (await resume(location2)).status == "completed"

    location3 = await crashed(tmp_path / "third")
    lease3 = tmp_path / "third" / "ckpt" / "pay-1" / LEASE_1
    lease3.write_text(json.dumps({"holder": "greedy:1", "expires": time.time() + 365 * 86400}))
    assert (await resume(location3)).status == "completed"  # a lease claiming a year is not believed


LEASE_1 = "lease.0000000001"


async def lapsed_lease_taken_twice_at_once(store: CheckpointStore) -> list[Any]:
    """Two holders take over a lapsed lease of run "run" in `store` at once."""
    lapsed = json.dumps({"holder": "crashed:1", "expires": time.time() - 1}).encode()
    await store.write(store.location(f"run/{LEASE_1}"), lapsed)

    async def take() -> str:
        async with runlock.run_lease(store, "run", seconds=30.0) as holder:
            await asyncio.sleep(0.2)
            return holder

    return list(await asyncio.gather(take(), take(), return_exceptions=True))


async def test_two_takers_of_a_lapsed_lease_at_once_one_wins_in_a_directory(tmp_path: Path) -> None:
    outcomes = await lapsed_lease_taken_twice_at_once(FileCheckpointStore(tmp_path))
    assert sorted(type(o).__name__ for o in outcomes) == ["RunAlreadyRunningError", "str"], outcomes


async def test_two_takers_of_a_lapsed_lease_at_once_one_wins_in_a_bucket(s3_service: S3Service, s3_bucket: str) -> None:
    async with S3CheckpointStore(s3_bucket, "runs", **s3_service.options()) as store:
        outcomes = await lapsed_lease_taken_twice_at_once(store)
    assert sorted(type(o).__name__ for o in outcomes) == ["RunAlreadyRunningError", "str"], outcomes


async def test_a_holder_that_stalled_past_its_lease_is_fenced_out(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    did: list[str] = []

    async def holder() -> None:
        async with runlock.run_lease(store, "run", seconds=0.6):
            await asyncio.sleep(5)  # the resumed run's work, which must not go on
            did.append("the work")

    running = asyncio.create_task(holder())
    while not (tmp_path / "run" / LEASE_1).exists():
        await asyncio.sleep(0.01)
    # what a process taking over after the lease lapsed leaves (as if this holder had stalled)
    (tmp_path / "run" / "lease.0000000002").write_text(json.dumps({"holder": "other:2", "expires": time.time() + 30}))
    with pytest.raises(RunAlreadyRunningError, match="taken over"):
        await asyncio.wait_for(running, 5)
    assert did == []
    assert (tmp_path / "run" / "lease.0000000002").exists()  # the newer holder's lease is left alone


async def test_the_lease_is_renewed_while_the_run_runs(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    lease = tmp_path / "long" / LEASE_1
    with use_clock(FastClock()) as clock:
        async with runlock.run_lease(store, "long", seconds=30.0) as holder:
            first = json.loads(lease.read_text())["expires"]
            while json.loads(lease.read_text())["expires"] < first + 30.0:  # renewed past the first lease
                await asyncio.sleep(0.001)
            assert clock.wall() > first  # the first lease would have lapsed by now
            assert clock.delays[:3] == [10.0, 10.0, 10.0]  # renewed every third of it, on the clock
            with pytest.raises(CheckpointError, match="already running"):
                async with runlock.run_lease(store, "long", seconds=30.0):
                    pass
            assert json.loads(lease.read_text())["holder"] == holder
    assert not lease.exists()


async def test_a_lease_its_holder_stopped_renewing_lapses_on_the_clock(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    lease = tmp_path / "run" / LEASE_1
    lease.parent.mkdir()
    with use_clock(FastClock()) as clock:
        lease.write_text(json.dumps({"holder": "crashed:1", "expires": clock.wall() + 30.0}))
        with pytest.raises(CheckpointError, match="already running"):
            async with runlock.run_lease(store, "run", seconds=30.0):
                pass
        await clock.sleep(31.0)  # half a minute later, on the clock: nobody renewed it
        async with runlock.run_lease(store, "run", seconds=30.0) as holder:
            assert json.loads((lease.parent / "lease.0000000002").read_text())["holder"] == holder
            assert not lease.exists()  # the lapsed one is gone
        await runlock.mark_completed(store, "run")
        assert await runlock.completed_at(store, "run") == pytest.approx(clock.wall(), abs=5.0)
        assert clock.wall() > time.time() + 30.0  # the marker's time is the clock's, not the system's
