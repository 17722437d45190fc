"""The bulk build paths (issue 12) give what the general ones give: `task(f, id=...)`
without options, a group's tasks registered once, and the compiled graph."""

from __future__ import annotations

import pytest

from graflow_async import GraphError, parallel, task, workflow
from graflow_async.tasks import Task


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
