"""A checkpoint whose envelope is sound but whose content is not (SPEC section 6).

The checksum proves a file was not damaged by accident, not that its document makes
sense: a file edited by hand, written by a buggy tool or forged and re-sealed passes
it. Each mutation below changes one field of a real checkpoint, re-seals the document
with the format's own writer (so magic, version and checksum are valid) and must be
refused with a `CheckpointError` naming the field, both by loading it into a plan and
by `resume()`, before any task runs: never a TypeError, ValueError, KeyError or
TaskFailedError, and never a silent load.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graflow_async import CheckpointError, ParallelGroupError, resume, run, task, workflow
from graflow_async.checkpoints import encode_checkpoint, load_checkpoint
from graflow_async.checkpoints.format import decode_checkpoint
from graflow_async.define.tasks import load_task
from graflow_async.plan import ChannelData, RunGraph, RunPlan
from graflow_async.plan.snapshot import check_document, from_doc
from graflow_async.plan.state import RUNNING

calls: Counter[str] = Counter()


class Crash(Exception):
    """Stands for the process dying right after the checkpoint."""


@task
async def double(n: int) -> int:
    calls["double"] += 1
    return n * 2


@task(inject_context=True)
async def looper(context: Any, data: list[int] | None = None) -> list[int]:
    """Iterates three times; in its second cycle saves a checkpoint and crashes (first run only)."""
    calls["looper"] += 1
    seen = [*(data or []), context.cycle_count]
    if context.cycle_count == 2 and context.resumed_metadata is None:
        await context.checkpoint(metadata={"at": 2})
        raise Crash("the machine went away")
    if context.cycle_count < 3:
        context.next_iteration(seen)
    return seen


@task(inject_context=True)
async def spawn(context: Any) -> list[str]:
    calls["spawn"] += 1
    return context.next_task(double(task_id="doubled", n=4) >> looper)


@task
async def side() -> str:
    calls["side"] += 1
    return "side"


@task
async def report(looper: list[int], side: str, doubled: int) -> str:
    calls["report"] += 1
    return f"{side}: {looper} after {doubled}"


with workflow("fields") as fields_wf:
    (spawn | side) >> report


@pytest.fixture
async def saved(tmp_path: Path) -> Path:
    """A real checkpoint: saved by `looper` in its second cycle, inside a group member's
    additions (so it holds added tasks, iteration data, group state and held ends)."""
    with pytest.raises(ParallelGroupError):
        await run(fields_wf, run_id="fields", checkpoint_store=tmp_path / "store")
    return tmp_path / "store" / "fields" / "1.ckpt"


def fresh_plan() -> RunPlan:
    return RunPlan(RunGraph(fields_wf.compile()), ChannelData())


def layout(doc: dict[str, Any]) -> dict[str, int]:
    """Node numbers of the restored run: the tasks by id, the group's barrier, the count."""
    plan = fresh_plan()
    from_doc(plan, copy.deepcopy(doc), load_task)
    graph = plan.graph
    return {
        **{i: graph.index[i] for i in ("spawn", "side", "report", "doubled", "looper")},
        "barrier": graph.groups[0].barrier,
        "nodes": len(graph),
    }


Mutation = Callable[[dict[str, Any], dict[str, int]], None]


def at(path: str, value: Any) -> Mutation:
    """Set the field at dotted `path` (list indices as numbers) to `value`."""

    def mutate(doc: dict[str, Any], nodes: dict[str, int]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value(doc, nodes) if callable(value) else value

    return mutate


def node_array(field: str, node: str, value: Any) -> Mutation:
    """Set `plan.<field>[node]` (a bytes or list array, one entry per node) to `value`."""

    def mutate(doc: dict[str, Any], nodes: dict[str, int]) -> None:
        array = doc["plan"][field]
        items = list(array)
        items[nodes[node]] = value
        doc["plan"][field] = bytes(items) if isinstance(array, bytes) else items

    return mutate


def drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any], nodes: dict[str, int]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def legacy_completed(doc: dict[str, Any], nodes: dict[str, int]) -> None:
    del doc["plan"]  # a checkpoint of graflow-async 0.1 (no added tasks), restored from its completed tasks
    doc.update(results={"side": "side"}, attempts={"side": 1}, pending=["spawn", "report"], task_id=None)
    doc["completed"] = ["side", "nobody"]


# name -> (the field the error must name, with {node} placeholders; the mutation)
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "run_id is a number": ("run_id", at("run_id", 12345)),
    "run_id climbs out of the store": ("run_id", at("run_id", "..")),
    "workflow_ref is a number": ("workflow_ref", at("workflow_ref", 7)),
    "sequence is a string": ("sequence", at("sequence", "x")),
    "created_at is not a number": ("created_at", at("created_at", "yesterday")),
    "graph is a string": ("graph", at("graph", "a >> b")),
    "results is a list of pairs": ("results", at("results", lambda d, n: [list(i) for i in d["results"].items()])),
    "a result for an id no task has": ('results["seed"]', at("results.seed", 41)),
    "channel is a string": ("channel", at("channel", "rows=3")),
    "a channel key that is not a string": ("channel", at("channel", {7: "seven"})),
    "metadata is a list of pairs": ("metadata", at("metadata", [["at", 2]])),
    "task_id names no task": ("task_id", at("task_id", "nobody")),
    "an attempt count is a string": ('attempts["spawn"]', at("attempts.spawn", "x")),
    "completed is a string": ("completed", at("completed", "spawn")),
    "a legacy checkpoint completes an unknown task": ("completed[1]", legacy_completed),
    "plan lacks runs": ("plan.runs", drop("plan.runs")),
    "plan has a key of another version": ("plan.extra", at("plan.extra", [])),
    "runs is a string": ("plan.runs", at("plan.runs", "3")),
    "a negative run count": ("plan.runs[{looper}]", node_array("runs", "looper", -1)),
    "a run count beyond max_cycles": ("plan.runs[{looper}]", node_array("runs", "looper", 10**6)),
    "an unknown status": ("plan.status[{looper}]", node_array("status", "looper", 9)),
    "a group barrier that is running": ("plan.status[{barrier}]", node_array("status", "barrier", RUNNING)),
    "status one node short": ("plan.status", at("plan.status", lambda d, n: d["plan"]["status"][:-1])),
    "released is 2": ("plan.released[{side}]", node_array("released", "side", 2)),
    "a million remaining counts": ("plan.remaining", at("plan.remaining", [0] * 1_000_000)),
    "more predecessors remaining than a task has": ("plan.remaining[{report}]", node_array("remaining", "report", 50)),
    "a hold on a node out of range": ("plan.holds[0][0]", at("plan.holds", lambda d, n: [[n["nodes"] + 5, []]])),
    "a hold releasing a group barrier": (
        "plan.holds[0][1][0]",
        at("plan.holds", lambda d, n: [[n["looper"], [n["barrier"]]]]),
    ),
    "iteration data nested one level deeper": (
        "plan.iter_data[0]",
        at("plan.iter_data", lambda d, n: [d["plan"]["iter_data"]]),
    ),
    "a negative node asked to run again": ("plan.again[0]", at("plan.again", [-1])),
    "a skipped node that is a float": ("plan.skip_roots[0]", at("plan.skip_roots", [1.5])),
    "an end hold on a group that does not exist": (
        "plan.end_holds[0][1][0][0]",
        at("plan.end_holds", lambda d, n: [[n["looper"], [[7, 0]]]]),
    ),
    "one group too many": ("plan.groups", at("plan.groups", lambda d, n: d["plan"]["groups"] * 2)),
    "a group result for a member out of range": (
        "plan.groups[0][1][0][0]",
        at("plan.groups.0.1", [[9, "side", True, 0.0, None]]),
    ),
    "a failed member without its error": (
        "plan.groups[0][1][0][4]",
        at("plan.groups.0.1", [[1, "side", False, 0.0, None]]),
    ),
    "a hold count that is negative": ("plan.groups[0][0][0]", at("plan.groups.0.0.0", -1)),
    "an addition by a node out of range": ("plan.added[0][0]", at("plan.added.0.0", 99)),
    "an addition whose goto is a string": ("plan.added[0][1]", at("plan.added.0.1", "yes")),
    "an added task that is a plain function": (
        "plan.added[0][2]",
        at("plan.added.0.2", {"task": "os:system", "id": "x", "bound": {}}),
    ),
    "an added chain that is a string": ("plan.added[0][2]", at("plan.added.0.2", {"chain": "doubled >> looper"})),
}


def reseal(good: Path, mutate: Mutation, tmp_path: Path, name: str) -> tuple[Path, dict[str, int]]:
    doc = decode_checkpoint(good.read_bytes())
    nodes = layout(doc)
    mutate(doc, nodes)
    bad = tmp_path / f"{name.replace(' ', '-')}.ckpt"
    bad.write_bytes(encode_checkpoint(doc))  # the format's own writer: a valid envelope and checksum
    return bad, nodes


async def test_the_real_checkpoint_resealed_resumes(saved: Path, tmp_path: Path) -> None:
    """The control: re-sealing alone changes nothing, so each refusal below is the mutation's."""
    same, _ = reseal(saved, lambda doc, nodes: None, tmp_path, "unchanged")
    calls.clear()
    result = await resume(str(same), workflow=fields_wf)
    assert result.output == "side: [1, 2, 3] after 8"
    assert calls == {"looper": 2, "report": 1}  # the saving cycle again, the last one, the successor


@pytest.mark.parametrize("name", list(MUTATIONS))
async def test_a_malformed_field_is_refused_naming_it(saved: Path, tmp_path: Path, name: str) -> None:
    field, mutate = MUTATIONS[name]
    bad, nodes = reseal(saved, mutate, tmp_path, name)
    field = field.format(**nodes)

    with pytest.raises(CheckpointError) as loading:
        from_doc(fresh_plan(), await load_checkpoint(str(bad)), load_task)
    assert f"checkpoint field '{field}' " in str(loading.value)

    calls.clear()
    with pytest.raises(CheckpointError) as resuming:
        await resume(str(bad), workflow=fields_wf)
    assert f"checkpoint field '{field}' " in str(resuming.value)
    assert calls == {}  # refused before any task ran


# --- any field, any value ---------------------------------------------------------------------------
JUNK: list[Any] = [
    None,
    True,
    -1,
    0,
    1,
    7,
    2**40,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x",
    "looper",
    "os:system",
    b"",
    b"\x09",
    [],
    [0],
    [[0]],
    [[0, []]],
    [-1, [0]],
    [0, True, {}],
    {},
    {"a": 1},
    {1: 2},
    {"task": "x"},
    {"chain": []},
]


def places(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every field, list item and map entry inside `value`."""
    found = [at] if at else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.extend(places(child, (*at, key)))
    return found


async def test_no_value_in_any_field_escapes_as_another_error(saved: Path) -> None:
    """Random values (of every kind) put anywhere in the document, one to three at a time,
    or fields removed: loading and restoring either succeeds or raises CheckpointError."""
    good = decode_checkpoint(saved.read_bytes())
    rng = random.Random(20240601)
    outcomes: Counter[str] = Counter()
    for _ in range(600):
        doc = copy.deepcopy(good)
        for _ in range(rng.choice((1, 1, 2, 3))):
            *parents, last = rng.choice(places(doc))
            target: Any = doc
            for key in parents:
                target = target[key]
            if isinstance(target, dict) and rng.random() < 0.15:
                del target[last]
            else:
                target[last] = copy.deepcopy(rng.choice(JUNK))
        try:
            from_doc(fresh_plan(), check_document(doc, "fuzzed"), load_task)
            outcomes["loaded"] += 1  # user data (results, channel, metadata, bound arguments) takes anything
        except CheckpointError as exc:
            message = str(exc)  # names the field, or says the kind is wrong
            assert message.startswith("checkpoint field '") or "not a graflow-async run checkpoint" in message, exc
            outcomes["refused"] += 1
    assert outcomes["refused"] > 400, outcomes
