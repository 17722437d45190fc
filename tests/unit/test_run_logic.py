"""The web's run logic as plain values, without a server: whether a run's owner is gone,
task summaries from events, which workflow resumes a run, `Workflow.to_mermaid` and
the tasks the run page lists (the drawing itself: test_graphview.py)."""

from __future__ import annotations

import pickle
import re
from typing import Any

import pytest

from graflow_async import chain, parallel, task, workflow
from graflow_async.exceptions import CheckpointError, RunAlreadyRunningError, RunCompletedError
from graflow_async.web.runs.manager import find_workflow
from graflow_async.web.runs.page import task_view
from graflow_async.web.runs.state import LiveRun, Owner, apply_event, effective_status, host_identity, pid_alive
from graflow_async.web.runs.ui import run_duration, span

ME = Owner("me", "host-a|boot|ns", 100)


def running(owner: dict[str, Any] | None, lease_until: float | None = 1000.0) -> dict[str, Any]:
    return {"run_id": "r", "status": "running", "owner": owner, "lease_until": lease_until}


@pytest.mark.parametrize(
    ("owner", "lease", "alive", "driving", "expected"),
    [
        ({"instance": "other", "host": "host-b", "pid": 5}, 1000.0, False, False, "running"),  # another host: lease
        ({"instance": "other", "host": "host-b", "pid": 5}, 999.0, True, False, "interrupted"),  # lease lapsed
        ({"instance": "other", "host": "host-a|boot|ns", "pid": 5}, 1000.0, False, False, "interrupted"),  # pid gone
        ({"instance": "other", "host": "host-a|boot|ns", "pid": 5}, 1000.0, True, False, "running"),
        ({"instance": "me", "host": "host-a|boot|ns", "pid": 100}, 1000.0, True, False, "interrupted"),  # not here
        ({"instance": "me", "host": "host-a|boot|ns", "pid": 100}, 1000.0, True, True, "running"),
        (None, 1000.0, True, False, "interrupted"),
        ({"instance": "other", "host": "host-b", "pid": 5}, None, True, False, "interrupted"),
    ],
)
def test_a_running_run_is_interrupted_once_its_owner_is_gone(owner, lease, alive, driving, expected) -> None:
    record = running(owner, lease)
    assert effective_status(record, ME, driving=driving, now=999.5, alive=lambda pid: alive) == expected


def test_other_statuses_are_reported_as_stored() -> None:
    for status in ("completed", "suspended", "failed", "cancelled"):
        assert effective_status({"status": status, "owner": None}, ME, driving=False, now=0.0) == status


def test_this_process_is_alive_and_has_a_host_identity() -> None:
    import os

    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(2**22 + 12345)
    assert host_identity().count("|") == 2 and Owner.this_process().pid == os.getpid()


def test_a_killed_child_not_yet_reaped_is_gone() -> None:
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # lives until killed
    try:
        assert pid_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_alive(child.pid) and child.poll() is not None  # a zombie until now: gone all the same
    finally:
        child.kill()
        child.wait()


def test_task_summaries_follow_the_events() -> None:
    tasks: dict[str, dict[str, Any]] = {}
    apply_event(tasks, "task_started", "a", 10.0, {"attempt": 1})
    apply_event(tasks, "task_retrying", "a", 11.0, {"attempt": 1})
    apply_event(tasks, "task_started", "a", 12.0, {"attempt": 2})
    apply_event(tasks, "task_completed", "a", 13.0, {"duration": 0.75})
    apply_event(tasks, "task_started", "b", 13.0, {"attempt": 1})
    apply_event(tasks, "feedback_requested", "b", 13.5, {})
    assert tasks["b"]["state"] == "waiting"
    apply_event(tasks, "feedback_answered", "b", 14.0, {})
    apply_event(tasks, "task_failed", "b", 15.0, {})
    apply_event(tasks, "task_started", "c", 15.0, {})
    apply_event(tasks, "run_failed", None, 16.0, {})
    assert tasks["a"] == {"state": "done", "attempts": 2, "started_at": 12.0, "ended_at": 13.0, "duration": 0.75}
    assert tasks["b"]["state"] == "failed" and tasks["b"]["duration"] == 2.0
    assert tasks["c"]["state"] == "cancelled" and tasks["c"]["attempts"] == 1


def test_a_live_run_makes_a_record_with_a_lease_only_while_running() -> None:
    live = LiveRun("r1", "key", "name", started_at=5.0)
    record = live.to_record(ME, now=10.0)
    assert record["lease_until"] == 25.0 and record["owner"] == ME.to_dict() and record["status"] == "running"
    live.finish("completed", results={"a": b"x"})
    record = live.to_record(ME, now=11.0)
    assert record["lease_until"] is None and record["results"] == {"a": "b'x'"} and record["ended_at"] is not None
    assert LiveRun.from_record({**record, "tasks": {}}).results == {"a": "b'x'"}


def test_a_suspended_run_is_found_by_its_key_or_by_its_workflow_name() -> None:
    with workflow("shipping") as shipping:
        wf_task = task(lambda: 1, id="only")
        shipping.add(wf_task)
    served = {"ship-v2": shipping}
    assert find_workflow(served, {"workflow": "ship-v2", "workflow_name": "shipping"}, {}) == ("ship-v2", shipping)
    assert find_workflow(served, None, {"workflow": "shipping"}) == ("ship-v2", shipping)  # by name
    assert find_workflow({"shipping": shipping}, None, {"workflow": "shipping"}) == ("shipping", shipping)
    assert find_workflow(served, None, {"workflow": "other"}) is None


def test_resume_refusals_are_checkpoint_errors_carrying_the_run_id() -> None:
    for kind in (RunAlreadyRunningError, RunCompletedError):
        error = kind("r-1")
        assert isinstance(error, CheckpointError) and error.run_id == "r-1"
        again = pickle.loads(pickle.dumps(kind("r-2", "told otherwise")))
        assert (type(again), again.run_id, str(again)) == (kind, "r-2", "told otherwise")


# --- Mermaid -------------------------------------------------------------------------------------------


@task
def fetch() -> int:
    return 1


@task
def clean(fetch: int) -> int:
    return fetch


@task
def check(fetch: int) -> int:
    return fetch


@task
def index(fetch: int) -> int:
    return fetch


@task
def publish() -> None:
    return None


def pipeline() -> Any:
    with workflow('etl "nightly"') as wf:
        fetch >> parallel(chain(clean, index), check).set_group_name('prep <"#1">') >> publish
    return wf


def test_to_mermaid_draws_tasks_groups_and_links() -> None:
    text = pipeline().to_mermaid()
    assert text.splitlines()[0] == "flowchart TD"
    assert 'subgraph g0["prep #lt;#quot;#35;1#quot;#gt;"]' in text
    nodes = dict(re.findall(r'(t\d+)\["([^"]+)"\]', text))
    refs = {label: ref for ref, label in nodes.items()}
    assert set(refs) == {"fetch", "clean", "index", "check", "publish"}
    edges = set(re.findall(r"([tg]\d+) --> ([tg]\d+)", text))
    assert edges == {(refs["clean"], refs["index"]), (refs["fetch"], "g0"), ("g0", refs["publish"])}
    inside = text.split("subgraph")[1].split("end")[0]
    assert all(refs[t] in inside for t in ("clean", "index", "check")) and refs["fetch"] not in inside
    assert pipeline().to_mermaid("LR").startswith("flowchart LR\n")
    with pytest.raises(ValueError, match="direction"):
        pipeline().to_mermaid("sideways")


def test_nested_groups_are_nested_subgraphs() -> None:
    @task
    def a() -> None: ...

    @task
    def b() -> None: ...

    @task
    def c() -> None: ...

    with workflow("nest") as wf:
        wf.add(parallel(parallel(a, b).set_group_name("inner"), c).set_group_name("outer"))
    lines = wf.to_mermaid().splitlines()
    indent = {line.strip(): len(line) - len(line.lstrip()) for line in lines}
    outer = next(line for line in indent if line.endswith('["outer"]'))
    inner = next(line for line in indent if line.endswith('["inner"]'))
    nodes = {label: line for line in indent for label in "abc" if line.endswith(f'["{label}"]')}
    assert indent[outer] == 4 and indent[inner] == 8  # inner sits in outer
    assert (indent[nodes["a"]], indent[nodes["b"]], indent[nodes["c"]]) == (12, 12, 8)
    assert lines.index(" " * 12 + nodes["a"]) > lines.index(" " * 8 + inner)


def test_the_run_page_lists_tasks_by_layer_then_added_tasks() -> None:
    wf = pipeline()
    view = task_view(wf, {"index": {"state": "done", "attempts": 1, "duration": 0.5}, "extra": {"state": "running"}})
    assert [r["id"] for r in view.rows] == ["fetch", "clean", "check", "index", "publish", "extra"]
    assert view.rows[3]["state"] == "done" and view.rows[0]["state"] == "pending"
    assert view.counts == {
        "pending": 4,
        "throttled": 0,
        "running": 1,
        "retrying": 0,
        "waiting": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert not view.summarized and view.svg.startswith("<svg") and view.mermaid.startswith("flowchart TD")


def test_durations_read_well() -> None:
    assert [span(s) for s in (0.25, 12.34, 245, 7800)] == ["250 ms", "12.3 s", "4 min 5 s", "2 h 10 min"]
    assert run_duration({"started_at": 10.0, "ended_at": None}, now=70.0) == "1 min 0 s"
    assert run_duration({"started_at": None}) == ""
