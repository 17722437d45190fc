"""The bulk build paths (issue 12) give what the general ones give: `task(f, id=...)`
without options, a group's tasks registered once, and the compiled graph."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from graflow_async import GraphError, parallel, task, workflow
from graflow_async.define import collector
from graflow_async.define.tasks import Task


async def _job(x: int = 1) -> int:
    return x


def _plain_job(ctx: object, y: int) -> int:
    return y


def _attrs(t: Task) -> dict[str, object]:
    return {name: getattr(t, name) for name in Task.__slots__ if name != "__weakref__"}


@pytest.mark.parametrize("func", [_job, _plain_job])
def test_task_with_only_an_id_is_the_task_the_constructor_makes(func: object) -> None:
    fast = task(func, id="x")
    assert type(fast) is Task
    assert _attrs(fast) == _attrs(Task(func, id="x"))  # type: ignore[arg-type]


def test_task_with_an_id_and_options_still_checks_them() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        task(_job, id="x", colour="red")
    with pytest.raises(GraphError, match="non-empty string"):
        task(_job, id="")
    with pytest.raises(GraphError, match="non-empty string"):
        task(_job, id=3)
    with pytest.raises(TypeError, match="give the id once"):
        task("a", id="b")
    with pytest.raises(TypeError, match="already a task"):
        task(task(_job, id="t"), id="u")
    assert task(_job, id="x", timeout=2).timeout == 2.0
    assert task("named")(_job).id == "named"
    assert task(id="kw")(_job).id == "kw"


def test_a_group_gaining_members_registers_the_new_ones() -> None:
    a, b, c, d = (task(_job, id=i) for i in "abcd")
    group = parallel(a, b)
    with workflow("grow") as wf:
        wf.add(group)
        group.members.append(c)  # gained outside the operators
        task(_job, id="head") >> group
        group | d
    assert list(wf.tasks) == ["a", "b", "head", "c", "d"]
    assert wf.compile().groups[0].member_ids == ("a", "b", "c", "d")


def test_a_group_of_tasks_known_already_or_clashing_registers_one_by_one() -> None:
    a, b = task(_job, id="a"), task(_job, id="b")
    with workflow("known") as wf:
        a >> b
        parallel(a, b) >> task(_job, id="c")
    assert list(wf.tasks) == ["a", "b", "c"]
    with pytest.raises(GraphError, match="duplicate task id 'a'"):
        with workflow("clash"):
            parallel(task(_job, id="a"), task(_job, id="a"))
    with pytest.raises(GraphError, match="duplicate task id 'a'"):
        with workflow("clash2"):
            task(_job, id="a") >> task(_job, id="z")
            parallel(task(_job, id="a"), task(_job, id="y"))


@pytest.fixture
def thresholds() -> Iterator[tuple[int, ...]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_collection_is_rarer_inside_workflow_blocks_and_as_before_after(thresholds: tuple[int, ...]) -> None:
    with workflow("outer") as outer:
        assert gc.get_threshold() == collector.BUILD_THRESHOLDS
        with workflow("inner") as inner:
            inner.add(task(_job, id="i"))
        assert gc.get_threshold() == collector.BUILD_THRESHOLDS  # until the last block closes
        outer.add(task(_job, id="o"))
    assert gc.get_threshold() == thresholds
    with pytest.raises(GraphError), workflow("bad"):
        task(_job, id="a") >> _job
    assert gc.get_threshold() == thresholds
    with pytest.raises(GraphError, match="no tasks"), workflow("empty"):
        pass
    assert gc.get_threshold() == thresholds


def test_thresholds_the_application_set_are_left_alone(thresholds: tuple[int, ...]) -> None:
    with workflow("changed") as wf:
        wf.add(task(_job, id="a"))
        gc.set_threshold(5000, 20, 20)
    assert gc.get_threshold() == (5000, 20, 20)
    gc.set_threshold(50_000, 5, 500)
    with workflow("higher") as wf:
        assert gc.get_threshold() == (50_000, 100, 500)  # only ever raised
        wf.add(task(_job, id="a"))
    gc.set_threshold(0, 10, 10)  # automatic collection off stays off
    with workflow("off") as wf:
        assert gc.get_threshold() == (0, 10, 10)
        wf.add(task(_job, id="a"))
    assert gc.get_threshold() == (0, 10, 10)
