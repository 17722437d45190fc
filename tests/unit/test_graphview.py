"""The run page's drawing of a workflow, as plain values: layers, positions, group
boxes and arrows laid out from the compiled graph, the size past which a graph is
summarized, and work that grows with the graph's edges, not their square."""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

from graflow_async import chain, parallel, task, workflow
from graflow_async.define.compile import CompiledGraph
from graflow_async.define.graph import Workflow
from graflow_async.web.runs import graphview
from graflow_async.web.runs.graphview import drawable, layout, levels, render_svg, task_order
from graflow_async.web.runs.page import graph_facts, task_view


@task
async def step() -> None:
    return None


def pipeline() -> Workflow:
    """fetch >> (clean >> index | check) >> publish, the group named 'prep <"#1">'."""
    with workflow("etl") as wf:
        t = {name: step(task_id=name) for name in ("fetch", "clean", "index", "check", "publish")}
        t["fetch"] >> parallel(chain(t["clean"], t["index"]), t["check"]).set_group_name('prep <"#1">') >> t["publish"]
    return wf


def lattice(layers: int, width: int) -> Workflow:
    """`layers` rows of `width` tasks, each task linked to every task of the next row."""
    with workflow(f"lattice-{layers}x{width}") as wf:
        rows = [[step(task_id=f"L{i}_{j}") for j in range(width)] for i in range(layers)]
        wf.add(*rows[0])
        for upper, lower in itertools.pairwise(rows):
            for a in upper:
                for b in lower:
                    a >> b
    return wf


def fan(n: int) -> Workflow:
    with workflow(f"fan-{n}") as wf:
        step(task_id="start") >> parallel(*[step(task_id=f"f{i}") for i in range(n)]) >> step(task_id="end")
    return wf


def by_id(graph: CompiledGraph, values: dict[int, Any]) -> dict[str, Any]:
    return {graph.ids[node]: value for node, value in values.items()}


def test_tasks_sit_in_layers_ordered_top_down_and_every_edge_is_drawn() -> None:
    graph = pipeline().compile()
    level = levels(graph)
    assert {graph.ids[n]: level[n] for n in range(graph.task_count)} == {
        "fetch": 0,
        "clean": 1,
        "check": 1,
        "index": 2,
        "publish": 3,
    }
    assert [graph.ids[n] for n in task_order(graph, level)] == ["fetch", "clean", "check", "index", "publish"]
    drawing = layout(graph)
    boxes = by_id(graph, drawing.nodes)
    assert set(boxes) == {"fetch", "clean", "index", "check", "publish"}
    rows: dict[float, list[graphview.Box]] = {}
    for name, box in boxes.items():
        rows.setdefault(box.y, []).append(box)
        assert all(
            box.y < other.y
            for other_name, other in boxes.items()
            if level[graph.index[other_name]] > level[graph.index[name]]
        )
    assert len(rows) == 4  # one row per layer
    for row in rows.values():  # side by side, never overlapping
        row.sort(key=lambda b: b.x)
        assert all(a.x + a.w < b.x for a, b in itertools.pairwise(row))
    # every edge into a task is an arrow; the group's barrier -> publish starts at the group's box
    barrier = graph.groups[0].barrier
    expected = {
        (graph.index[a], graph.index[b]) for a, b in (("fetch", "clean"), ("fetch", "check"), ("clean", "index"))
    } | {(barrier, graph.index["publish"])}
    assert set(drawing.edges) == expected and len(drawing.edges) == 4
    group = drawing.groups[0]
    for name in ("clean", "index", "check"):
        b = boxes[name]
        assert group.x < b.x and b.x + b.w < group.x + group.w and group.y < b.y and b.y + b.h < group.y + group.h
    for name in ("fetch", "publish"):
        assert not group.y < boxes[name].y < group.y + group.h
    assert drawing.width >= max(b.x + b.w for b in boxes.values())
    assert drawing.height >= group.y + group.h


def test_the_svg_draws_each_arrow_from_above_and_colours_nodes_by_state() -> None:
    graph = pipeline().compile()
    svg = render_svg(graph, layout(graph), {"fetch": "done", "clean": "running"})
    assert svg.startswith('<svg class="graph"') and svg.endswith("</svg>")
    assert 'data-task="fetch" data-state="done"' in svg and 'data-task="clean" data-state="running"' in svg
    assert 'data-task="publish" data-state="pending"' in svg
    assert "prep &lt;&quot;#1&quot;&gt;" in svg and "<script" not in svg
    arrows = re.findall(r'<path class="edge" d="M([\d.]+),([\d.]+) C[^"]* ([\d.]+),([\d.]+)"', svg)
    assert len(arrows) == 4
    assert all(float(y1) < float(y2) for _, y1, _, y2 in arrows)  # each goes down to a lower layer


def test_nested_groups_are_boxes_within_boxes() -> None:
    with workflow("nest") as wf:
        a, b, c = (step(task_id=x) for x in "abc")
        wf.add(parallel(parallel(a, b).set_group_name("inner"), c).set_group_name("outer"))
    graph = wf.compile()
    drawing = layout(graph)
    named = {graph.groups[g].name: box for g, box in drawing.groups.items()}
    inner, outer = named["inner"], named["outer"]
    assert outer.x < inner.x and inner.x + inner.w < outer.x + outer.w and outer.y < inner.y
    c_box = by_id(graph, drawing.nodes)["c"]
    assert outer.x < c_box.x < outer.x + outer.w and not inner.x <= c_box.x <= inner.x + inner.w
    assert list(named) == ["outer", "inner"]  # the outer box first, so the inner one is drawn over it


def test_groups_following_groups_are_drawn_from_box_to_each_member() -> None:
    with workflow("group-lattice") as wf:
        groups = [parallel(*[step(task_id=f"g{i}_{j}") for j in range(4)]) for i in range(3)]
        groups[0] >> groups[1] >> groups[2]
    graph = wf.compile()
    level = levels(graph)
    assert sorted(level[n] for n in range(graph.task_count)) == [0] * 4 + [1] * 4 + [2] * 4
    edges = layout(graph).edges
    assert len(edges) == 8 and {graph.barrier_group[s] for s, _ in edges} == {0, 1}


def test_graphs_past_the_limits_are_not_drawn() -> None:
    assert drawable(fan(graphview.MAX_TASKS - 2).compile())  # start, the members, end
    assert not drawable(fan(graphview.MAX_TASKS - 1).compile())
    dense = lattice(2, 50).compile()  # 100 tasks, 2,500 arrows
    assert dense.task_count <= graphview.MAX_TASKS and not drawable(dense)
    view = task_view(lattice(2, 50), {})
    assert view.summarized and view.svg == "" and view.mermaid == ""
    assert [(layer["layer"], layer["tasks"]) for layer in view.layers] == [(0, 50), (1, 50)]


class Counted(tuple):  # type: ignore[type-arg]
    """A node's successors that count how many are read."""

    reads = 0

    def __iter__(self) -> Any:
        Counted.reads += len(self)
        return super().__iter__()


def counted(graph: CompiledGraph) -> CompiledGraph:
    return dataclasses.replace(graph, succs=tuple(Counted(s) for s in graph.succs), _memo={})


def test_layout_work_grows_with_the_edges_not_their_square() -> None:
    for layers, width in ((10, 10), (20, 20), (40, 40)):
        graph = counted(lattice(layers, width).compile())
        edges = sum(map(len, graph.succs))
        Counted.reads = 0
        drawing = layout(graph)
        assert len(drawing.edges) == edges and len(drawing.nodes) == layers * width
        assert Counted.reads <= 3 * edges, (layers, width, Counted.reads, edges)  # levels: 2 passes; arrows: 1
        Counted.reads = 0
        order = task_order(graph, levels(graph))
        assert Counted.reads <= 2 * edges
        assert [graph.ids[n] for n in order[: width + 1]] == [f"L0_{j}" for j in range(width)] + ["L1_0"]


def test_the_shape_of_a_workflow_is_worked_out_once() -> None:
    wf = lattice(3, 3)
    first = graph_facts(wf)
    assert first is not None and graph_facts(wf) is first
    wf.add(step(task_id="late"))  # a changed workflow compiles anew
    again = graph_facts(wf)
    assert again is not None and again is not first and again.graph.task_count == 10
