"""A durable run in-process (SPEC 10): its driver is SIGKILLed mid-run, and `recover`
in another process carries it on from its journal; what completed never runs again,
what was running runs again, the channel is not written twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import durable_flows as flows
import pytest
from worker_processes import PYTHONPATH, ROOT

from graflow_async import CheckpointError, GraflowError, RunAlreadyRunningError, recover, run


def notes(directory: Path) -> list[tuple[str, int]]:
    path = directory / "notes"
    if not path.exists():
        return []
    return [(line.split(":")[0], int(line.split(":")[1])) for line in path.read_text().split()]


async def start_driver(tmp_path: Path, run_id: str, *flow: str) -> asyncio.subprocess.Process:
    """A driver process of durable run `run_id` (`durable_flows`' DEMO, or the flow named)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable_flows",
        run_id,
        str(tmp_path / "checkpoints"),
        *flow,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        cwd=ROOT,
    )


async def killed_mid_run(tmp_path: Path, run_id: str, *flow: str) -> asyncio.subprocess.Process:
    """A driver process of durable run `run_id`, SIGKILLed while `slow` waits."""
    driver = await start_driver(tmp_path, run_id, *flow)
    deadline = time.monotonic() + 30
    while {"slow", "side"} - {name for name, _ in notes(tmp_path)}:
        assert time.monotonic() < deadline and driver.returncode is None, notes(tmp_path)
        await asyncio.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    await driver.wait()
    return driver


async def test_a_durable_run_whose_driver_was_killed_is_recovered_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    driver = await killed_mid_run(tmp_path, "pay-1")

    with pytest.raises(RunAlreadyRunningError):  # the dead driver's lease has not lapsed yet: taken by nobody
        await asyncio.wait_for(asyncio.shield(_claim_now(checkpoints)), 5)
    (tmp_path / "gate").touch()
    result = await asyncio.wait_for(recover("pay-1", checkpoint_store=checkpoints, owner_lease=2.0), 60)

    assert result.output == 4 * 10 + 5 and result.channel == {"fetched": 1, "slowed": 1}  # incr'd once, not twice
    ran = notes(tmp_path)
    by = {name: [pid for n, pid in ran if n == name] for name in ("fetch", "double", "side", "slow", "total")}
    assert by["fetch"] == by["double"] == by["side"] == [driver.pid]  # completed before the kill: never again
    assert by["slow"] == [driver.pid, os.getpid()]  # running at the kill: runs again
    assert by["total"] == [os.getpid()]
    again = await recover("pay-1", checkpoint_store=checkpoints)  # an ended run: its outcome
    assert again.output == result.output and again.results == result.results
    same = await run(flows.DEMO, run_id="pay-1", checkpoint_store=checkpoints, durable=True)
    assert same.output == result.output and len(notes(tmp_path)) == len(ran)  # the run id is an idempotency key


async def _claim_now(checkpoints: Path) -> None:
    from graflow_async.run.journal import FileJournal

    if await FileJournal(checkpoints, "pay-1").claim("test", 30.0) is None:
        raise RunAlreadyRunningError("pay-1", "held")


async def test_the_cli_recovers_a_durable_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    await killed_mid_run(tmp_path, "pay-2")
    (tmp_path / "gate").touch()
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graflow_async",
        "recover",
        "pay-2",
        "--checkpoint-store",
        str(tmp_path / "checkpoints"),
        "--no-progress",
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0 and "output: 45" in out.decode(), out
    assert [name for name, _ in notes(tmp_path)].count("fetch") == 1


async def test_a_cancelled_durable_run_stays_cancelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    running = asyncio.create_task(run(flows.DEMO, run_id="pay-3", checkpoint_store=checkpoints, durable=True))
    deadline = time.monotonic() + 30
    while "slow" not in {name for name, _ in notes(tmp_path)}:
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(GraflowError, match="pay-3 was cancelled"):  # never carried on by a recover
        await recover("pay-3", checkpoint_store=checkpoints)
    assert [name for name, _ in notes(tmp_path)].count("slow") == 1


@pytest.mark.parametrize("damage", [b"\xc1garbage", b"\x81\xa8workflow\x01"])
async def test_a_damaged_run_record_is_an_error_naming_the_run(tmp_path: Path, damage: bytes) -> None:
    journal = tmp_path / "checkpoints" / "pay-4" / "journal"
    journal.mkdir(parents=True)
    (journal / "run.msgpack").write_bytes(damage)
    with pytest.raises(CheckpointError, match="durable run pay-4"):
        await recover("pay-4", checkpoint_store=tmp_path / "checkpoints")


async def test_a_recovered_run_numbers_its_checkpoints_after_the_dead_drivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    await killed_mid_run(tmp_path, "pay-5", "SAVING")
    [first] = (tmp_path / "checkpoints" / "pay-5").glob("*.ckpt")
    saved = first.read_bytes()
    (tmp_path / "gate").touch()
    result = await asyncio.wait_for(recover("pay-5", checkpoint_store=tmp_path / "checkpoints"), 60)
    assert result.results["save_first"] == str(first)
    assert result.results["save_later"] != str(first) and Path(result.results["save_later"]).is_file()
    assert first.read_bytes() == saved  # the dead driver's checkpoint is kept, not overwritten


async def test_a_retry_pending_at_the_kill_comes_at_its_original_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    driver = await start_driver(tmp_path, "pay-6", "RETRYING")
    deadline = time.monotonic() + 30
    while not notes(tmp_path):
        assert time.monotonic() < deadline and driver.returncode is None
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # its failure is journaled, its 3 s backoff armed
    driver.send_signal(signal.SIGKILL)
    await driver.wait()
    result = await asyncio.wait_for(recover("pay-6", checkpoint_store=tmp_path / "checkpoints"), 30)
    assert result.output == 2
    [(first, _), (second, _)] = notes(tmp_path)
    waited = float(second.split("@")[1]) - float(first.split("@")[1])
    assert first.startswith("flaky1@") and second.startswith("flaky2@")
    assert 2.8 < waited < 5.0, waited  # its deadline (3 s): not at once (~2.3 s), not started over (>5.3 s)


@pytest.mark.parametrize("where", ["local", "redis"])
async def test_a_run_whose_journal_was_compacted_is_taken_over_from_its_snapshot(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    monkeypatch.setenv("GFT_COMPACT_EVERY", "3")  # a snapshot every few facts: `slow` is running in the last one
    transport = None
    if where == "redis":
        from graflow_async.transports.redis import RedisStreamsTransport

        url = request.getfixturevalue("redis_url")
        request.getfixturevalue("workers").start(1, "--import", "durable_flows", "--no-adopt")
        monkeypatch.setenv("GFT_REDIS_URL", url)
        transport = RedisStreamsTransport(url)
    await killed_mid_run(tmp_path, "pay-7")
    (tmp_path / "gate").touch()
    if transport is None:
        snapshots = list((tmp_path / "checkpoints" / "pay-7" / "journal").glob("snapshot.*"))
        assert snapshots, "the journal was never compacted"
        result = await asyncio.wait_for(recover("pay-7", checkpoint_store=tmp_path / "checkpoints"), 30)
    else:
        async with transport:
            assert await transport.client.hget("graflow:run:{pay-7}:snapshot", "upto") is not None
            result = await asyncio.wait_for(recover("pay-7", transport=transport, owner_lease=2.0), 30)
    assert result.output == 45 and result.channel == {"fetched": 1, "slowed": 1}
    by = {name: [pid for n, pid in notes(tmp_path) if n == name] for name in ("fetch", "double", "side", "total")}
    assert all(len(pids) == 1 for pids in by.values()), by  # nothing that completed ran again


async def test_a_durable_run_has_a_run_record_the_web_app_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started by `run` in another process, its record is in the run's feedback store:
    running while its driver lives, interrupted once it died (nobody adopts an in-process
    run), completed once `recover` carried it on."""
    from aiohttp.test_utils import TestClient, TestServer

    from graflow_async.feedback import FileFeedbackStore
    from graflow_async.web import create_app

    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    store = FileFeedbackStore(tmp_path / "feedback")
    async with TestClient(TestServer(create_app(feedback_store=store))) as client:
        driver = await start_driver(tmp_path, "pay-8")
        while "slow" not in {name for name, _ in notes(tmp_path)}:
            assert driver.returncode is None
            await asyncio.sleep(0.02)
        while (shown := await client.get("/api/runs/pay-8")).status == 404:  # its record, written as it starts
            await asyncio.sleep(0.05)
        assert (await shown.json())["status"] == "running"  # `slow` waits: its driver lives
        driver.send_signal(signal.SIGKILL)
        await driver.wait()  # gone: on this host its pid tells at once, elsewhere its lease's lapse
        listed = await (await client.get("/api/runs")).json()
        assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [("pay-8", "interrupted")]
        (tmp_path / "gate").touch()
        await recover("pay-8", checkpoint_store=tmp_path / "checkpoints", feedback_store=store)
        shown = await (await client.get("/api/runs/pay-8")).json()
        assert shown["status"] == "completed" and shown["results"]["total"] == 45


async def test_a_run_with_100_000_journaled_facts_is_taken_over_from_its_snapshot(tmp_path: Path) -> None:
    """A durable fan-out of 50,000 tasks whose driver is SIGKILLed once only its last task
    runs: its journal was compacted as it went, so `recover` reads a snapshot and the
    facts after it, not 100,000 facts (the takeover time is printed; `make bench` tracks it)."""
    import argparse

    from benchmarks.durable import takeover_part

    taken = await takeover_part(argparse.Namespace(facts=100_000), tmp_path)
    print(f"\ntakeover of {taken['facts']:,} facts: {taken['recover_s']:.2f} s")
    assert taken["tasks"] == 50_000 and taken["snapshot_kept"]  # completed, from a snapshot


async def test_a_run_record_kept_in_a_store_given_by_url_ends_with_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """A feedback store given as a URL is opened by the run, which keeps its record there
    and closes it only once the record says how the run ended."""
    from graflow_async.feedback import RedisFeedbackStore

    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))
    (tmp_path / "gate").touch()
    result = await run(
        flows.DEMO, run_id="pay-9", durable=True, checkpoint_store=tmp_path / "checkpoints", feedback_store=redis_url
    )
    assert result.output == 45
    store = RedisFeedbackStore(redis_url)
    try:
        record = await store.get_run("pay-9")
    finally:
        await store.aclose()
    assert record is not None and record["status"] == "completed" and record["results"]["total"] == 45
