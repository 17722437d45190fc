"""Drawing a workflow on the run page from its Mermaid text (`Workflow.to_mermaid`),
server-side, as SVG: no script library and nothing fetched from elsewhere.

`parse` reads the flowchart subset `to_mermaid` writes (nodes, nested subgraphs,
arrows); `layout` places nodes in levels (longest path from a root, an arrow to or
from a subgraph standing for arrows to its first or from its last nodes) and draws
each subgraph as a box around its nodes; `render_svg` makes the markup. Every node
is a ``<g class="node" data-task="<task id>" data-state="...">`` so that the page
colours it by state and its script updates it live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

NODE_W, NODE_H, GAP_X, GAP_Y, PAD, MARGIN = 150, 36, 28, 46, 10, 16
MAX_NODES = 500  # larger graphs are not drawn (the page still lists the tasks)
_NODE = re.compile(r'^\s*(t\d+)\["(.*)"\]\s*$')
_SUBGRAPH = re.compile(r'^\s*subgraph (g\d+)\["(.*)"\]\s*$')
_EDGE = re.compile(r"^\s*([tg]\d+) --> ([tg]\d+)\s*$")
_ENTITIES = {"#quot;": '"', "#lt;": "<", "#gt;": ">", "#35;": "#"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)))


@dataclass
class Diagram:
    """What a Mermaid flowchart holds: nodes (ref -> label), subgraphs (ref -> label),
    the subgraphs each node or subgraph sits in (outermost first), and the arrows."""

    nodes: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    path: dict[str, tuple[str, ...]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> Diagram:
    """The diagram in `text`; lines it does not know are ignored."""
    diagram, stack = Diagram(), list[str]()
    for line in text.splitlines():
        if m := _NODE.match(line):
            diagram.nodes[m[1]] = _ENTITY.sub(lambda e: _ENTITIES[e[0]], m[2])
            diagram.path[m[1]] = tuple(stack)
        elif m := _SUBGRAPH.match(line):
            diagram.groups[m[1]] = _ENTITY.sub(lambda e: _ENTITIES[e[0]], m[2])
            diagram.path[m[1]] = tuple(stack)
            stack.append(m[1])
        elif line.strip() == "end" and stack:
            stack.pop()
        elif m := _EDGE.match(line):
            diagram.edges.append((m[1], m[2]))
    return diagram


def _members(d: Diagram, group: str) -> list[str]:
    return [n for n in d.nodes if group in d.path[n]]


def _expanded(d: Diagram) -> list[tuple[str, str]]:
    """The arrows between nodes that the diagram's arrows stand for."""
    def inside(ref: str) -> list[str]:
        return [ref] if ref in d.nodes else _members(d, ref)

    def entries(ref: str) -> list[str]:
        nodes = set(inside(ref))
        return [n for n in nodes if not any(b == n and a in nodes for a, b in node_edges)] or sorted(nodes)

    def exits(ref: str) -> list[str]:
        nodes = set(inside(ref))
        return [n for n in nodes if not any(a == n and b in nodes for a, b in node_edges)] or sorted(nodes)

    node_edges = [(a, b) for a, b in d.edges if a in d.nodes and b in d.nodes]
    return [(a, b) for x, y in d.edges for a in exits(x) for b in entries(y) if a != b]


def levels(d: Diagram) -> dict[str, int]:
    """Each node's level: the longest chain of arrows leading to it."""
    edges = _expanded(d)
    level = dict.fromkeys(d.nodes, 0)
    for _ in range(len(d.nodes)):  # relax; a cycle (never written by to_mermaid) just stops here
        changed = False
        for a, b in edges:
            if level[b] < level[a] + 1:
                level[b], changed = level[a] + 1, True
        if not changed:
            break
    return level


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float


def layout(d: Diagram) -> tuple[dict[str, Box], dict[str, Box], float, float]:
    """Boxes of the nodes and of the subgraphs, and the drawing's width and height."""
    level = levels(d)
    order = list(d.nodes)
    rows: dict[int, list[str]] = {}
    for node in sorted(d.nodes, key=lambda n: (level[n], d.path[n], order.index(n))):
        rows.setdefault(level[node], []).append(node)
    widest = max((len(r) for r in rows.values()), default=0)
    width = widest * NODE_W + max(widest - 1, 0) * GAP_X + 2 * MARGIN
    nodes: dict[str, Box] = {}
    for row, members in rows.items():
        span = len(members) * NODE_W + (len(members) - 1) * GAP_X
        x0 = (width - span) / 2
        for i, node in enumerate(members):
            nodes[node] = Box(x0 + i * (NODE_W + GAP_X), MARGIN + 14 + row * (NODE_H + GAP_Y), NODE_W, NODE_H)
    groups: dict[str, Box] = {}
    for group in d.groups:
        inner = [nodes[n] for n in _members(d, group)]
        if not inner:
            continue
        depth = max(len(d.path[n]) for n in _members(d, group)) - len(d.path[group])  # 1 + subgraphs within
        pad = PAD * depth
        x, y = min(b.x for b in inner) - pad, min(b.y for b in inner) - pad - 8
        groups[group] = Box(x, y, max(b.x + b.w for b in inner) + pad - x, max(b.y + b.h for b in inner) + pad - y)
    height = max((b.y + b.h for b in [*nodes.values(), *groups.values()]), default=0) + MARGIN
    return nodes, groups, width, height


def _arrow(start: Box, end: Box) -> str:
    x1, y1, x2, y2 = start.x + start.w / 2, start.y + start.h, end.x + end.w / 2, end.y
    middle = (y1 + y2) / 2
    return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} {x2:.1f},{middle:.1f} {x2:.1f},{y2:.1f}"


def _short(label: str, most: int = 20) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"


def render_svg(text: str, states: dict[str, str] | None = None) -> str:
    """SVG markup of the flowchart `text`, each task node in its state from `states`
    (task id -> state; default "pending"); "" when there is nothing (or too much) to draw."""
    d = parse(text)
    if not d.nodes or len(d.nodes) > MAX_NODES:
        return ""
    nodes, groups, width, height = layout(d)
    boxes = {**nodes, **groups}
    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="workflow graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a93a3"/></marker></defs>']
    for group, box in groups.items():
        out.append(f'<g class="group"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
                   f'height="{box.h:.1f}" rx="8"/><text x="{box.x + 8:.1f}" y="{box.y + 13:.1f}">'
                   f"{escape(_short(d.groups[group], 30))}</text></g>")
    for a, b in d.edges:
        if a in boxes and b in boxes:
            out.append(f'<path class="edge" d="{_arrow(boxes[a], boxes[b])}" marker-end="url(#arrow)"/>')
    for node, box in nodes.items():
        label = d.nodes[node]
        state = (states or {}).get(label, "pending")
        out.append(f'<g class="node" data-task="{escape(label)}" data-state="{escape(state)}">'
                   f"<title>{escape(label)}</title>"
                   f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w}" height="{box.h}" rx="6"/>'
                   f'<text x="{box.x + box.w / 2:.1f}" y="{box.y + box.h / 2 + 5:.1f}" text-anchor="middle">'
                   f"{escape(_short(label))}</text></g>")
    out.append("</svg>")
    return "".join(out)
