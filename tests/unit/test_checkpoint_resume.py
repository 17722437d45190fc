"""Checkpoints and resume at the runner level (SPEC section 6), in this process on file
stores.

What a resumed run runs again and what it does not, where checkpoints are written,
parallel groups, exact round trips of codec types, and every way a checkpoint is refused
(corrupt, foreign, wrongly signed, another graph, unserializable values, a workflow that
cannot be imported). A real process killed after its checkpoint:
tests/e2e/test_checkpoint_crash.py; S3: tests/integration/test_checkpoint_resume_s3.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import random
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from etl_flow import Crash, crashed_run, etl

from graflow_async import (
    CheckpointError,
    CheckpointManager,
    Event,
    ParallelGroupError,
    RetryPolicy,
    TaskFailedError,
    Workflow,
    parallel,
    resume,
    run,
    task,
    workflow,
)
from graflow_async.checkpoints import (
    FileCheckpointStore,
    encode_checkpoint,
    load_checkpoint,
)
from graflow_async.plan.state import FAILED

KEY_ENV = "GRAFLOW_CHECKPOINT_KEY"


class Opaque:
    """A value the codec cannot serialize."""


def checkpoints_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ckpt"))


# --- checkpoint, then resume in-process ---------------------------------------------------


async def test_resume_skips_completed_tasks_and_reruns_the_checkpointing_one(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    seen: dict[str, Any] = {}
    locations: list[str] = []
    wf = etl(calls, seen, locations)
    await crashed_run(wf, run_id="run-etl", checkpoint_store=tmp_path, initial_channel={"seed": 7})
    assert calls == {"extract": 1, "transform": 1}
    assert seen == {"transform": None}

    result = await resume(locations[0], workflow=wf)

    assert calls == {"extract": 1, "transform": 2, "load": 1}  # extract did not run again
    assert seen == {"transform": {"stage": "transform", "n": 1}, "load": None}
    assert result.status == "completed"
    assert result.run_id == "run-etl"
    assert result.results == {
        "extract": [1, 2, 3],
        "transform": [10, 20, 30],
        "load": "loaded 60 from 3 rows (seed 7)",
    }
    assert result.output == "loaded 60 from 3 rows (seed 7)"
    assert result.channel == {"seed": 7, "rows": 3, "loaded": True}
    assert result.checkpoint is None
    assert result.pending_feedback == []


async def test_the_checkpoint_document_records_the_run(tmp_path: Path) -> None:
    @task(retry_policy=RetryPolicy(max_retries=1, initial_interval=0), inject_context=True)
    async def flaky(context) -> str:
        if context.attempt == 1:
            raise ConnectionError("blip")
        return "ok"

    @task(inject_context=True)
    async def saver(context, flaky: str) -> str:
        return await context.checkpoint(metadata={"epoch": 3, "loss": 0.25})

    @task
    async def after(saver: str) -> str:
        return saver

    with workflow("recorded") as wf:
        flaky >> saver >> after
    result = await run(wf, run_id="run-doc", checkpoint_store=tmp_path, initial_channel={"k": "v"})
    doc = await load_checkpoint(result.output)

    assert doc["run_id"] == "run-doc"
    assert doc["workflow"] == "recorded"
    assert doc["fingerprint"] == wf.compile().fingerprint
    assert doc["task_id"] == "saver"
    assert doc["metadata"] == {"epoch": 3, "loss": 0.25}
    assert doc["sequence"] == 1
    assert doc["results"] == {"flaky": "ok"}
    assert doc["channel"] == {"k": "v"}
    assert doc["completed"] == ["flaky"]
    assert sorted(doc["pending"]) == ["after", "saver"]
    assert doc["attempts"] == {"flaky": 2, "saver": 1}
    assert doc["workflow_ref"] is None  # defined in a function: not importable


async def test_locations_are_store_run_id_and_an_increasing_number(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    locations: list[str] = []
    wf = etl(calls, {}, locations, checkpoints=3)
    await crashed_run(wf, run_id="run-n", checkpoint_store=tmp_path / "store", initial_channel={"seed": 1})
    run_dir = tmp_path / "store" / "run-n"
    assert locations == [str(run_dir / f"{n}.ckpt") for n in (1, 2, 3)]
    assert checkpoints_under(tmp_path) == [run_dir / f"{n}.ckpt" for n in (1, 2, 3)]
    assert [(await load_checkpoint(loc))["metadata"]["n"] for loc in locations] == [1, 2, 3]


async def test_a_resumed_run_keeps_numbering_in_the_same_store(tmp_path: Path) -> None:
    locations: list[str] = []

    @task(inject_context=True)
    async def first(context) -> str:
        if context.resumed_metadata is None:
            locations.append(await context.checkpoint(metadata={"where": "first"}))
            raise Crash("gone")
        return "first"

    @task(inject_context=True)
    async def second(context, first: str) -> str:
        return await context.checkpoint(metadata={"where": "second"})

    with workflow("numbering") as wf:
        first >> second
    await crashed_run(wf, run_id="run-k", checkpoint_store=tmp_path)
    result = await resume(locations[0], workflow=wf)
    assert locations == [str(tmp_path / "run-k" / "1.ckpt")]
    assert result.output == str(tmp_path / "run-k" / "2.ckpt")
    assert (await load_checkpoint(result.output))["metadata"] == {"where": "second"}


async def test_resuming_an_older_checkpoint_does_not_overwrite_newer_ones(tmp_path: Path) -> None:
    """Going back to checkpoint 1 of 3 must not silently replace checkpoints 2 and 3."""
    locations: list[str] = []

    @task(inject_context=True)
    async def saver(context) -> str:
        if context.resumed_metadata is None:
            for i in (1, 2, 3):
                locations.append(await context.checkpoint(metadata={"i": i}))
            raise Crash("gone")
        return await context.checkpoint(metadata={"i": "after resume"})

    with workflow("older") as wf:
        wf.add(saver)
    await crashed_run(wf, run_id="run-old", checkpoint_store=tmp_path)
    result = await resume(locations[0], workflow=wf)
    assert result.output not in locations
    assert [(await load_checkpoint(loc))["metadata"] for loc in locations] == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert (await load_checkpoint(result.output))["metadata"] == {"i": "after resume"}


async def test_path_override_writes_exactly_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "elsewhere" / "deep" / "mine.ckpt"

    @task(inject_context=True)
    async def saver(context) -> list[str]:
        if context.resumed_metadata is not None:
            return ["resumed"]
        return [
            await context.checkpoint(path=str(target), metadata={"at": "absolute"}),
            await context.checkpoint(path="relative/here.ckpt", metadata={"at": "relative"}),
        ]

    with workflow("override") as wf:
        wf.add(saver)
    result = await run(wf, checkpoint_store=tmp_path / "store")
    assert result.output == [str(target), str(Path.cwd() / "relative" / "here.ckpt")]
    assert target.is_file() and (tmp_path / "relative" / "here.ckpt").is_file()
    assert not (tmp_path / "store").exists()
    assert not (tmp_path / ".graflow").exists()
    with pytest.raises(CheckpointError, match="has completed since"):
        await resume(str(target), workflow=wf)  # the run completed: resuming needs force
    resumed = await resume(str(target), workflow=wf, force=True)
    assert resumed.output == ["resumed"]
    assert resumed.run_id == result.run_id


async def test_default_store_is_dot_graflow_checkpoints_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, run_id="run-default", initial_channel={"seed": 2})
    expected = Path.cwd() / ".graflow" / "checkpoints" / "run-default" / "1.ckpt"
    assert locations == [str(expected)]
    assert expected.is_file()
    result = await resume(locations[0], workflow=wf)
    assert result.output == "loaded 60 from 3 rows (seed 2)"


async def test_a_run_that_never_checkpoints_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    @task
    async def plain() -> int:
        return 1

    with workflow("plain") as wf:
        wf.add(plain)
    assert (await run(wf)).output == 1
    assert list(tmp_path.iterdir()) == []


async def test_store_objects_are_used_and_left_open(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "objects")
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, run_id="run-obj", checkpoint_store=store, initial_channel={"seed": 3})
    assert locations == [store.location("run-obj/1.ckpt")]
    assert await store.list() == locations  # the run did not close a store it was given
    result = await resume(locations[0], workflow=wf, checkpoint_store=store)
    assert result.output == "loaded 60 from 3 rows (seed 3)"
    await store.aclose()


async def test_resume_from_checkpoint_matches_resume(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    locations: list[str] = []
    wf = etl(calls, {}, locations)
    await crashed_run(wf, checkpoint_store=tmp_path, initial_channel={"seed": 4})
    by_function = await resume(locations[0], workflow=wf)
    by_manager = await CheckpointManager.resume_from_checkpoint(locations[0], workflow=wf, force=True)
    assert by_manager == by_function
    assert calls == {"extract": 1, "transform": 3, "load": 2}


async def test_checkpoint_saved_event_carries_the_location(tmp_path: Path) -> None:
    events: list[Event] = []
    locations: list[str] = []
    wf = etl(Counter(), {}, locations, checkpoints=2)
    await crashed_run(
        wf, run_id="run-ev", checkpoint_store=tmp_path, on_event=events.append, initial_channel={"seed": 5}
    )
    saved = [e for e in events if e.kind == "checkpoint_saved"]
    assert [(e.run_id, e.task_id, e.location) for e in saved] == [
        ("run-ev", "transform", locations[0]),
        ("run-ev", "transform", locations[1]),
    ]
    assert [e.sequence for e in saved] == [1, 2]


# --- parallel groups ---------------------------------------------------------------------------


async def test_checkpoint_in_a_group_member_reruns_only_unfinished_members(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    fast_done, saved = asyncio.Event(), asyncio.Event()
    locations: list[str] = []

    @task
    async def start() -> int:
        calls["start"] += 1
        return 2

    @task
    async def fast(start: int) -> str:
        calls["fast"] += 1
        return f"fast{start}"

    @task(inject_context=True)
    async def saver(context, start: int) -> str:
        calls["saver"] += 1
        if context.resumed_metadata is None:
            await fast_done.wait()  # `fast` has completed; `slow` is still running
            locations.append(await context.checkpoint(metadata={"member": "saver"}))
            saved.set()
            raise Crash("gone mid-group")
        return f"saver{start}:{context.resumed_metadata['member']}"

    @task
    async def slow(start: int) -> str:
        calls["slow"] += 1
        await saved.wait()
        return f"slow{start}"

    @task
    async def end(fast: str, saver: str, slow: str) -> str:
        calls["end"] += 1
        return "+".join((fast, saver, slow))

    with workflow("grouped") as wf:
        start >> (fast | saver | slow).set_group_name("members") >> end

    def watch(event: Event) -> None:
        if event.kind == "task_completed" and event.task_id == "fast":
            fast_done.set()

    with pytest.raises(ParallelGroupError):
        await run(wf, checkpoint_store=tmp_path, on_event=watch)
    doc = await load_checkpoint(locations[0])
    assert sorted(doc["completed"]) == ["fast", "start"]
    assert sorted(doc["pending"]) == ["end", "saver", "slow"]
    assert doc["groups_done"] == []

    result = await resume(locations[0], workflow=wf)
    assert result.output == "fast2+saver2:saver+slow2"
    assert calls == {"start": 1, "fast": 1, "saver": 2, "slow": 2, "end": 1}


async def test_checkpoint_inside_a_nested_group(tmp_path: Path) -> None:
    """``a >> (b | (g >> (c | saver))) >> d``: the checkpoint is taken in the inner group
    once `b` and `c` are done; on resume only `saver` and `d` run."""
    calls: Counter[str] = Counter()
    done = {"b": asyncio.Event(), "c": asyncio.Event()}
    locations: list[str] = []

    def plain(name: str) -> Any:
        async def body() -> str:
            calls[name] += 1
            return name

        return task(body, id=name)

    @task(inject_context=True)
    async def saver(context) -> str:
        calls["saver"] += 1
        if context.resumed_metadata is None:
            await done["b"].wait()
            await done["c"].wait()
            locations.append(await context.checkpoint(metadata={"inner": True}))
            raise Crash("gone")
        return "saver"

    @task
    async def d(b: str, c: str, saver: str) -> str:
        calls["d"] += 1
        return f"{b} {c} {saver}"

    with workflow("nested") as wf:
        a, b, g, c = (plain(n) for n in "abgc")
        inner = (c | saver).set_group_name("inner")
        a >> (b | (g >> inner)).set_group_name("outer") >> d

    def watch(event: Event) -> None:
        if event.kind == "task_completed" and event.task_id in done:
            done[event.task_id].set()

    with pytest.raises(ParallelGroupError):
        await run(wf, checkpoint_store=tmp_path, on_event=watch)
    result = await resume(locations[0], workflow=wf)
    assert result.output == "b c saver"
    assert calls == {"a": 1, "b": 1, "g": 1, "c": 1, "saver": 2, "d": 1}


async def test_a_failed_inner_group_of_an_unfinished_group_is_judged_again_on_resume(tmp_path: Path) -> None:
    """``parallel(inner: flaky | steady, saver)``, best effort, then `after`: the inner group has
    failed (its barrier is failed) when `saver` checkpoints. On resume the barrier is left
    to its group (it is never dispatched like a task): `flaky` runs again, succeeds, the
    inner group passes and `after` runs."""
    calls: Counter[str] = Counter()
    inner_failed = asyncio.Event()
    locations: list[str] = []
    outage = {"on": True}

    @task
    async def flaky() -> str:
        calls["flaky"] += 1
        if outage["on"]:
            raise ConnectionError("down")
        return "flaky"

    @task
    async def steady() -> str:
        calls["steady"] += 1
        return "steady"

    @task(inject_context=True)
    async def saver(context) -> str:
        calls["saver"] += 1
        if context.resumed_metadata is None:
            await inner_failed.wait()
            locations.append(await context.checkpoint())
            raise Crash("gone")
        return "saver"

    @task
    async def after(flaky: str = "-", saver: str = "-") -> str:
        calls["after"] += 1
        return f"{flaky} {saver}"

    with workflow("nested-failure") as wf:
        inner = (flaky | steady).set_group_name("inner")
        parallel(inner, saver).set_group_name("outer").with_execution(policy="best_effort") >> after

    def watch(event: Event) -> None:
        if event.kind == "group_finished" and event.data["group_id"] == "inner":
            inner_failed.set()

    first = await run(wf, checkpoint_store=tmp_path, on_event=watch)  # best effort: passes without them
    assert first.output == "- -"
    doc = await load_checkpoint(locations[0])
    [barrier] = [g.barrier for g in wf.compile().groups if g.name == "inner"]
    assert doc["plan"]["status"][barrier] == FAILED
    outage["on"] = False
    result = await resume(locations[0], workflow=wf, force=True)
    assert result.output == "flaky saver"
    assert calls == {"flaky": 2, "steady": 1, "saver": 2, "after": 2}


async def test_a_failed_best_effort_member_runs_again_on_resume(tmp_path: Path) -> None:
    """Observed and kept: only completed work is saved, so a member that had failed
    (and been accepted by a best-effort group) before the checkpoint is pending and
    runs again when the run resumes; here it succeeds the second time."""
    calls: Counter[str] = Counter()
    ok_done, bad_failed = asyncio.Event(), asyncio.Event()
    locations: list[str] = []
    outage = {"on": True}

    @task
    async def ok() -> str:
        calls["ok"] += 1
        return "ok"

    @task
    async def bad() -> str:
        calls["bad"] += 1
        if outage["on"]:
            raise ConnectionError("service down")
        return "bad recovered"

    @task(inject_context=True)
    async def saver(context) -> str:
        calls["saver"] += 1
        if context.resumed_metadata is None:
            await ok_done.wait()
            await bad_failed.wait()
            locations.append(await context.checkpoint(metadata={"after": "bad failed"}))
        return "saved"

    @task
    async def report(ok: str | None = None, bad: str | None = None, saver: str | None = None) -> list:
        calls["report"] += 1
        return [ok, bad, saver]

    with workflow("best-effort") as wf:
        (ok | bad | saver).set_group_name("tolerant").with_execution(policy="best_effort") >> report

    def watch(event: Event) -> None:
        if event.task_id == "ok" and event.kind == "task_completed":
            ok_done.set()
        if event.task_id == "bad" and event.kind == "task_failed":
            bad_failed.set()

    first = await run(wf, checkpoint_store=tmp_path, on_event=watch)
    assert first.output == ["ok", None, "saved"]
    doc = await load_checkpoint(locations[0])
    assert doc["completed"] == ["ok"]
    assert "bad" in doc["pending"]

    outage["on"] = False
    resumed = await resume(locations[0], workflow=wf, force=True)  # the first run completed
    assert resumed.output == ["ok", "bad recovered", "saved"]
    assert calls == {"ok": 1, "bad": 2, "saver": 2, "report": 2}


# --- values round-trip exactly -------------------------------------------------------------------

VALUES: dict[str, Any] = {
    "when": dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
    "naive": dt.datetime(1999, 12, 31, 12, 0),
    "day": dt.date(2024, 1, 1),
    "span": dt.timedelta(days=2, microseconds=7),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "amount": Decimal("12345.678900"),
    "pair": (1, "two", (3.0, None)),
    "tags": {"a", "b"},
    "frozen": frozenset({1, 2}),
    "raw": b"\x00\xff",
    "big": 2**80,
    "nested": {("x", 1): [dt.time(8, 30), {Decimal("-0"), uuid.UUID(int=1)}]},
}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b)


async def test_codec_types_round_trip_through_checkpoint_and_resume(tmp_path: Path) -> None:
    locations: list[str] = []
    received: dict[str, Any] = {}

    @task(inject_context=True)
    async def produce(context) -> dict[str, Any]:
        for key, value in VALUES.items():
            await context.channel.set(key, value)
        return dict(VALUES)

    @task(inject_context=True)
    async def saver(context, produce: dict[str, Any]) -> str:
        if context.resumed_metadata is None:
            locations.append(await context.checkpoint(metadata={"values": produce}))
            raise Crash("gone")
        received["metadata"] = context.resumed_metadata["values"]
        received["argument"] = produce
        received["channel"] = {key: await context.channel.get(key) for key in VALUES}
        return "done"

    with workflow("types") as wf:
        produce >> saver
    await crashed_run(wf, checkpoint_store=tmp_path)
    result = await resume(locations[0], workflow=wf)

    assert same(result.results["produce"], VALUES)
    assert same(result.channel, VALUES)
    assert same(received["argument"], VALUES)
    assert same(received["channel"], VALUES)
    assert same(received["metadata"], VALUES)


# --- refused checkpoints: unserializable values ---------------------------------------------------


async def test_an_unserializable_result_names_the_task_and_type(tmp_path: Path) -> None:
    @task
    async def opaque() -> Opaque:
        return Opaque()

    @task(inject_context=True)
    async def saver(context, opaque: Opaque) -> str:
        with pytest.raises(CheckpointError) as refused:
            await context.checkpoint()
        return str(refused.value)

    with workflow("opaque") as wf:
        opaque >> saver
    message = (await run(wf, checkpoint_store=tmp_path)).output
    assert "'opaque'" in message and "Opaque" in message
    assert checkpoints_under(tmp_path) == []


async def test_an_uncaught_checkpoint_error_fails_the_task(tmp_path: Path) -> None:
    @task
    async def opaque() -> Opaque:
        return Opaque()

    @task(inject_context=True)
    async def saver(context, opaque: Opaque) -> str:
        return await context.checkpoint()

    with workflow("opaque") as wf:
        opaque >> saver
    with pytest.raises(TaskFailedError) as failed:
        await run(wf, checkpoint_store=tmp_path)
    assert failed.value.task_id == "saver"
    assert isinstance(failed.value.cause, CheckpointError)


async def test_an_unserializable_channel_value_names_the_key_and_type(tmp_path: Path) -> None:
    """`channel.set` refuses such a value outright; one can still get in by mutating
    a value after it was set, and the checkpoint then names the key."""

    @task(inject_context=True)
    async def saver(context) -> list[str]:
        with pytest.raises(TypeError) as at_set:
            await context.channel.set("direct", Opaque())
        items: list[Any] = ["fine"]
        await context.channel.set("items", items)
        items.append(Opaque())  # the channel holds the same list
        with pytest.raises(CheckpointError) as at_checkpoint:
            await context.checkpoint()
        return [str(at_set.value), str(at_checkpoint.value)]

    with workflow("channel") as wf:
        wf.add(saver)
    at_set, at_checkpoint = (await run(wf, checkpoint_store=tmp_path)).output
    assert "'direct'" in at_set and "Opaque" in at_set
    assert "channel key 'items'" in at_checkpoint and "Opaque" in at_checkpoint


async def test_non_dict_metadata_is_refused(tmp_path: Path) -> None:
    @task(inject_context=True)
    async def saver(context) -> str:
        with pytest.raises(TypeError, match="metadata must be a dict"):
            await context.checkpoint(metadata=["epoch", 3])
        return "refused"

    with workflow("meta") as wf:
        wf.add(saver)
    assert (await run(wf, checkpoint_store=tmp_path)).output == "refused"


# --- refused checkpoints: damaged or foreign files ----------------------------------------------------


@pytest.fixture
async def saved(tmp_path: Path) -> tuple[Workflow, Path]:
    """A workflow and a good checkpoint of it (unsigned)."""
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, checkpoint_store=tmp_path / "good", initial_channel={"seed": 9})
    return wf, Path(locations[0])


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1 :]


DAMAGE = {
    "empty": (lambda d: b"", "empty"),
    "truncated-header": (lambda d: d[:30], "truncated"),
    "truncated-half": (lambda d: d[: len(d) // 2], "truncated"),
    "truncated-last-byte": (lambda d: d[:-1], "truncated"),
    "extra-bytes": (lambda d: d + b"\x00", "corrupted"),
    "flipped-magic": (lambda d: flip(d, 2), "not a graflow-async checkpoint"),
    "flipped-version": (lambda d: flip(d, 9), "version"),
    "flipped-length": (lambda d: flip(d, 19), "truncated|corrupted"),
    "flipped-checksum": (lambda d: flip(d, 40), "corrupted"),
    "flipped-payload": (lambda d: flip(d, len(d) // 2), "corrupted"),
    "flipped-last": (lambda d: flip(d, len(d) - 1), "corrupted"),
    "pickle": (lambda d: pickle.dumps({"run_id": "x", "results": {}}), "pickle"),
    "json": (lambda d: b'{"run_id": "x"}', "JSON"),
    "bare-msgpack": (lambda d: msgpack.packb({"run_id": "x"}), "not a graflow-async checkpoint"),
    "random": (lambda d: b"\x01" + random.Random(7).randbytes(300), "not a graflow-async checkpoint"),
    "not-a-run": (lambda d: encode_checkpoint({"hello": 1}), "not a graflow-async run checkpoint"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_damaged_or_foreign_files_raise_checkpoint_error(
    saved: tuple[Workflow, Path], tmp_path: Path, damage: str
) -> None:
    wf, good = saved
    make, expected = DAMAGE[damage]
    bad = tmp_path / f"{damage}.ckpt"
    bad.write_bytes(make(good.read_bytes()))
    with pytest.raises(CheckpointError, match=expected) as refused:
        await resume(str(bad), workflow=wf)
    assert str(bad) in str(refused.value)
    assert not isinstance(refused.value, msgpack.exceptions.UnpackException | ValueError)
    with pytest.raises(CheckpointError, match=expected):  # the same without workflow=
        await resume(str(bad))


async def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "1.ckpt"
    with pytest.raises(CheckpointError, match="not found") as refused:
        await resume(str(missing))
    assert str(missing) in str(refused.value)


# --- refused checkpoints: another graph, a workflow that cannot be imported --------------------------


def shaped(name: str, tasks: list[str], edges: list[tuple[str, str]]) -> Workflow:
    async def step(context) -> str:
        if context.resumed_metadata is None and context.task_id == "b":
            return await context.checkpoint()
        return context.task_id

    with workflow(name) as wf:
        nodes = {t: task(step, id=t, inject_context=True) for t in tasks}
        wf.add(*nodes.values())
        for a, b in edges:
            nodes[a] >> nodes[b]
    return wf


BASE = ("shape", ["a", "b", "c"], [("a", "b"), ("b", "c")])
CHANGES = {
    "extra task": (
        ("shape", ["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d")]),
        ["tasks only in the workflow: d", "edge c >> d only in the workflow"],
    ),
    "renamed task": (
        ("shape", ["a", "b", "c2"], [("a", "b"), ("b", "c2")]),
        ["tasks only in the checkpoint: c", "tasks only in the workflow: c2"],
    ),
    "different edge": (
        ("shape", ["a", "b", "c"], [("a", "b"), ("a", "c")]),
        ["edge b >> c only in the checkpoint", "edge a >> c only in the workflow"],
    ),
    "renamed workflow": (("other", ["a", "b", "c"], [("a", "b"), ("b", "c")]), ["workflow 'shape' vs 'other'"]),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_checkpoint_from_another_graph_names_the_difference(tmp_path: Path, change: str) -> None:
    location = (await run(shaped(*BASE), checkpoint_store=tmp_path)).results["b"]
    shape, expected = CHANGES[change]
    with pytest.raises(CheckpointError, match="different graph") as refused:
        await resume(location, workflow=shaped(*shape))
    for difference in expected:
        assert difference in str(refused.value)
    assert (await resume(location, workflow=shaped(*BASE), force=True)).results["b"] == "b"


async def test_a_workflow_that_is_not_importable_asks_for_workflow(tmp_path: Path) -> None:
    location = (await run(shaped(*BASE), checkpoint_store=tmp_path)).results["b"]
    with pytest.raises(CheckpointError, match=r"workflow=") as refused:
        await resume(location)
    assert "importable" in str(refused.value)


async def test_a_recorded_workflow_that_no_longer_imports_asks_for_workflow(tmp_path: Path) -> None:
    location = (await run(shaped(*BASE), checkpoint_store=tmp_path)).results["b"]
    doc = await load_checkpoint(location)
    doc["workflow_ref"] = "no_such_module_for_graflow_tests:wf"
    moved = tmp_path / "moved.ckpt"
    moved.write_bytes(encode_checkpoint(doc))
    with pytest.raises(CheckpointError, match="no_such_module_for_graflow_tests") as refused:
        await resume(str(moved))
    assert "workflow=" in str(refused.value)


# --- signed checkpoints -----------------------------------------------------------------------------------


async def test_signed_checkpoints_need_the_same_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k1")
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, checkpoint_store=tmp_path, initial_channel={"seed": 11})
    location = locations[0]

    monkeypatch.setenv(KEY_ENV, "k2")
    with pytest.raises(CheckpointError, match="signature"):
        await resume(location, workflow=wf)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(CheckpointError, match="signed but no signing key"):
        await resume(location, workflow=wf)
    monkeypatch.setenv(KEY_ENV, "k1")
    assert (await resume(location, workflow=wf)).output == "loaded 60 from 3 rows (seed 11)"


async def test_a_store_signing_key_is_used_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = FileCheckpointStore(tmp_path, signing_key=b"store-key")
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, checkpoint_store=store, initial_channel={"seed": 12})
    with pytest.raises(CheckpointError, match="signed but no signing key"):
        await resume(locations[0], workflow=wf)
    result = await resume(locations[0], workflow=wf, checkpoint_store=store)
    assert result.output == "loaded 60 from 3 rows (seed 12)"
    await store.aclose()


async def test_a_store_signing_key_applies_to_checkpoints_outside_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = FileCheckpointStore(tmp_path / "store", signing_key=b"store-key")
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    await crashed_run(wf, checkpoint_store=store, initial_channel={"seed": 13})
    doc = await load_checkpoint(locations[0], store=store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    forged = {  # the same run, unsigned or signed with another key, outside the store's directory
        "unsigned.ckpt": (encode_checkpoint(doc), "not signed"),
        "other-key.ckpt": (encode_checkpoint(doc, key=b"attacker"), "signature does not verify"),
    }
    for name, (data, refusal) in forged.items():
        (elsewhere / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=refusal):
            await load_checkpoint(str(elsewhere / name), store=store)
        with pytest.raises(CheckpointError, match=refusal):
            await CheckpointManager(store).load(str(elsewhere / name))
        with pytest.raises(CheckpointError, match=refusal):
            await resume(str(elsewhere / name), workflow=wf, checkpoint_store=store)
    (elsewhere / "signed.ckpt").write_bytes(encode_checkpoint(doc, key=b"store-key"))
    assert (await CheckpointManager(store).load(str(elsewhere / "signed.ckpt")))["run_id"] == doc["run_id"]
    result = await resume(str(elsewhere / "signed.ckpt"), workflow=wf, checkpoint_store=store)
    assert result.output == "loaded 60 from 3 rows (seed 13)"
    await store.aclose()


async def test_an_unsigned_checkpoint_is_refused_when_a_key_is_set(
    saved: tuple[Workflow, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wf, good = saved
    monkeypatch.setenv(KEY_ENV, "k1")
    with pytest.raises(CheckpointError, match="not signed"):
        await resume(str(good), workflow=wf)
