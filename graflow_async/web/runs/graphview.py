"""Drawing a workflow on the run page, server-side, as SVG, from its compiled graph
(`compile.CompiledGraph`: tasks and group barriers numbered 0..n-1, successors as int
lists, groups): no script library, nothing fetched from elsewhere, no text re-parsed.

`levels` puts each task in a layer, the longest chain of tasks leading to it (a group's
barrier takes no layer: what follows a group sits right below its deepest member);
`task_order` is the tasks by layer, then group, then declaration; `layout` places them
row by row, boxes each group around its members and keeps an arrow per edge into a task
(an edge from a barrier starts at its group's box; edges into barriers are the boxes
themselves). Each step is one pass over the nodes or edges (plus a sort of the tasks),
so the cost grows with the graph, never with its square. Graphs above `MAX_TASKS`,
`MAX_GROUPS` or `MAX_EDGES` are not drawn (`drawable`): the run page summarizes them.
`render_svg` makes the markup; every node is a ``<g class="node" data-task="<task id>"
data-state="...">`` so that the page colours it by state and its script updates it live.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from html import escape
from itertools import chain

from graflow_async.define.compile import CompiledGraph

NODE_W, NODE_H, GAP_X, GAP_Y, PAD, MARGIN = 150, 36, 28, 46, 10, 16
MAX_TASKS = 300  # more tasks than this are not drawn: rows of hundreds of boxes help nobody
MAX_GROUPS = 300
MAX_EDGES = 2_000  # arrows into tasks


def levels(graph: CompiledGraph) -> list[int]:
    """Each node's layer (barriers included): Kahn's walk, O(nodes + edges)."""
    succs, tasks = graph.succs, graph.task_count  # tasks are nodes 0..tasks-1
    waiting = [0] * len(succs)
    for node, count in Counter(chain.from_iterable(succs)).items():
        waiting[node] = count
    level = [0] * len(succs)
    ready = [node for node, count in enumerate(waiting) if not count]
    for node in ready:  # grows while it is walked
        below = level[node] + (node < tasks)  # a barrier adds no layer
        for s in succs[node]:
            if level[s] < below:
                level[s] = below
            waiting[s] -= 1
            if not waiting[s]:
                ready.append(s)
    return level  # (a cycle, which compile refuses, would just leave its nodes where they are)


def group_paths(graph: CompiledGraph) -> list[tuple[int, ...]]:
    """Each group's path: the groups it sits in, outermost first, then itself."""
    parent = [graph.group_of[g.barrier] for g in graph.groups]  # a nested group's barrier is a member
    paths: list[tuple[int, ...] | None] = [None] * len(parent)
    for gi in range(len(parent)):
        unknown, g = [], gi
        while g != -1 and paths[g] is None:
            unknown.append(g)
            g = parent[g]
        above = () if g == -1 else paths[g] or ()
        for g in reversed(unknown):  # outermost first
            above = paths[g] = (*above, g)
    return [p or () for p in paths]


def task_order(graph: CompiledGraph, level: list[int], paths: list[tuple[int, ...]] | None = None) -> list[int]:
    """The task nodes by layer, then by the groups they sit in, then as declared."""
    paths = group_paths(graph) if paths is None else paths
    group_of, empty = graph.group_of, ()
    return sorted(
        range(graph.task_count), key=lambda n: (level[n], paths[group_of[n]] if group_of[n] != -1 else empty, n)
    )


def drawn_edges(graph: CompiledGraph) -> list[tuple[int, int]]:
    """The arrows: every edge into a task, from a task or from a group's barrier."""
    tasks = graph.task_count
    return [(node, s) for node, after in enumerate(graph.succs) for s in after if s < tasks]


def drawable(graph: CompiledGraph) -> bool:
    """Whether the graph is small enough to draw (the edges are counted only then)."""
    if graph.task_count > MAX_TASKS or len(graph.groups) > MAX_GROUPS:
        return False
    tasks = graph.task_count
    return sum(1 for after in graph.succs for s in after if s < tasks) <= MAX_EDGES


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class Layout:
    """Where things go: task node -> box, group index -> box, the arrows as (source node,
    task node) with a barrier source drawn from its group's box, and the drawing's size."""

    nodes: dict[int, Box]
    groups: dict[int, Box]
    edges: list[tuple[int, int]]
    width: float
    height: float


def layout(graph: CompiledGraph) -> Layout:
    """The drawing of `graph`: rows by layer, centred; groups boxed around their members."""
    level = levels(graph)
    paths = group_paths(graph)
    rows: dict[int, list[int]] = {}
    for node in task_order(graph, level, paths):
        rows.setdefault(level[node], []).append(node)
    widest = max(map(len, rows.values()), default=0)
    width = widest * NODE_W + max(widest - 1, 0) * GAP_X + 2 * MARGIN
    nodes: dict[int, Box] = {}
    for row, members in rows.items():
        x0 = (width - len(members) * NODE_W - (len(members) - 1) * GAP_X) / 2
        y = MARGIN + 14 + row * (NODE_H + GAP_Y)
        for i, node in enumerate(members):
            nodes[node] = Box(x0 + i * (NODE_W + GAP_X), y, NODE_W, NODE_H)
    groups = _group_boxes(graph, nodes, paths)
    height = max((b.y + b.h for b in chain(nodes.values(), groups.values())), default=0) + MARGIN
    return Layout(nodes, groups, drawn_edges(graph), width, height)


def _group_boxes(graph: CompiledGraph, nodes: dict[int, Box], paths: list[tuple[int, ...]]) -> dict[int, Box]:
    """A box per group around the boxes of the tasks inside it, padded by how many
    groups it holds within (so nested boxes do not touch)."""
    extent: dict[int, list[float]] = {}  # group -> [left, top, right, bottom, groups deep]
    for node, box in nodes.items():
        gi = graph.group_of[node]
        if gi == -1:
            continue
        path = paths[gi]
        for depth, g in enumerate(reversed(path), start=1):
            e = extent.setdefault(g, [box.x, box.y, box.x + box.w, box.y + box.h, depth])
            e[0], e[1] = min(e[0], box.x), min(e[1], box.y)
            e[2], e[3], e[4] = max(e[2], box.x + box.w), max(e[3], box.y + box.h), max(e[4], depth)
    boxes = {}
    for g, (left, top, right, bottom, deepest) in extent.items():
        pad = PAD * deepest
        boxes[g] = Box(left - pad, top - pad - 8, right - left + 2 * pad, bottom - top + 2 * pad + 8)
    return dict(sorted(boxes.items(), key=lambda item: len(paths[item[0]])))  # outer boxes drawn first


def _arrow(start: Box, end: Box) -> str:
    x1, y1, x2, y2 = start.x + start.w / 2, start.y + start.h, end.x + end.w / 2, end.y
    middle = (y1 + y2) / 2
    return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} {x2:.1f},{middle:.1f} {x2:.1f},{y2:.1f}"


def _short(label: str, most: int = 20) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"


def render_svg(graph: CompiledGraph, drawing: Layout, states: dict[str, str] | None = None) -> str:
    """SVG markup of `drawing` (`layout(graph)`), each task node in its state from
    `states` (task id -> state; default "pending")."""
    states = states or {}
    out = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {drawing.width:.0f} '
        f'{drawing.height:.0f}" width="{drawing.width:.0f}" height="{drawing.height:.0f}" role="img" '
        'aria-label="workflow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a93a3"/></marker></defs>',
    ]
    for g, box in drawing.groups.items():
        out.append(
            f'<g class="group"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
            f'height="{box.h:.1f}" rx="8"/><text x="{box.x + 8:.1f}" y="{box.y + 13:.1f}">'
            f"{escape(_short(graph.groups[g].name, 30))}</text></g>"
        )
    for source, target in drawing.edges:
        start = drawing.nodes.get(source) or drawing.groups.get(graph.barrier_group.get(source, -1))
        if start is not None:  # (a group with no task inside has no box)
            out.append(f'<path class="edge" d="{_arrow(start, drawing.nodes[target])}" marker-end="url(#arrow)"/>')
    for node, box in drawing.nodes.items():
        label = graph.ids[node]
        out.append(
            f'<g class="node" data-task="{escape(label)}" data-state="{escape(states.get(label, "pending"))}">'
            f"<title>{escape(label)}</title>"
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w}" height="{box.h}" rx="6"/>'
            f'<text x="{box.x + box.w / 2:.1f}" y="{box.y + box.h / 2 + 5:.1f}" text-anchor="middle">'
            f"{escape(_short(label))}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)
