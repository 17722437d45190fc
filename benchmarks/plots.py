"""The PNGs of `make bench` (matplotlib, no display needed):

- ``per_task.png``: cost per task of each scenario on each system (log scale); a
  missing bar is labelled n/a, capped or error;
- ``growth.png``: the fan-out as N grows from 1k to 1M, µs/task and peak RSS, one
  line per system; a line stops where the system was capped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .output import fmt
from .scenarios import GROWTH_KIND, LABELS

COLORS = {
    "asyncio": "#7f7f7f",
    "graflow-async": "#1f77b4",
    "graflow": "#ff7f0e",
    "langgraph": "#2ca02c",
    "langgraph+memory": "#98df8a",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(doc: dict[str, Any], what: str) -> str:
    cpu = doc.get("machine", {}).get("cpu", "?")
    return f"{what}\n{doc.get('machine', {}).get('cpus', '?')} x {cpu}, commit {doc.get('versions', {}).get('commit')}"


def per_task(doc: dict[str, Any], systems: tuple[str, ...], path: Path) -> None:
    from matplotlib.patches import Patch

    plt = _pyplot()
    rows = list(reversed(doc["scenarios"]))
    height = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(11, 0.75 * len(rows) + 2))
    for k, system in enumerate(systems):
        offset = (len(systems) - 1 - k) * height
        for i, row in enumerate(rows):
            r = row["results"].get(system, {})
            y = i + offset - 0.4 + height / 2
            if r.get("status") == "ok":
                ax.barh(y, r["value"], height=height, color=COLORS[system])
                ax.text(r["value"] * 1.08, y, fmt(r["value"]), va="center", fontsize=6)
            elif r.get("status"):
                ax.text(1.05, y, r["status"], va="center", fontsize=6, color=COLORS[system])
    ax.set_xscale("log")
    ax.set_xlim(left=1)
    ax.set_yticks(range(len(rows)), [f"{r['title']} ({r['unit']})" for r in rows], fontsize=8)
    ax.set_xlabel("µs per task, median run (log scale; HITL: µs per answer)")
    ax.grid(axis="x", which="both", alpha=0.3)
    handles = [Patch(color=COLORS[s], label=LABELS[s]) for s in systems]
    fig.legend(handles=handles, loc="lower center", ncol=len(systems), fontsize=8)
    ax.set_title(_title(doc, "Cost per task by scenario and system (lower is better)"), fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def growth(doc: dict[str, Any], systems: tuple[str, ...], path: Path) -> None:
    plt = _pyplot()
    rows = [r for r in doc["scenarios"] if r["kind"] == GROWTH_KIND and r["runner"] == "local"]
    fig, (cost, rss) = plt.subplots(1, 2, figsize=(12, 5.4))
    for system in systems:
        points = [(r["n"], r["results"][system]) for r in rows if r["results"].get(system, {}).get("status") == "ok"]
        if not points:
            continue
        capped = [r["n"] for r in rows if r["results"].get(system, {}).get("status") == "capped"]
        label = LABELS[system] + (f" (capped at N >= {min(capped):,})" if capped else "")
        ns = [n for n, _ in points]
        cost.plot(ns, [p["value"] for _, p in points], marker="o", color=COLORS[system], label=label)
        rss.plot(ns, [p["peak_rss_mib"] for _, p in points], marker="o", color=COLORS[system], label=label)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for ax, unit in ((cost, "µs per task (median run)"), (rss, "peak RSS of the process, MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _count(x)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tasks in the fan-out (N)")
        ax.set_ylabel(unit)
        ax.grid(which="both", alpha=0.3)
    fig.legend(*cost.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(_title(doc, "Fan-out/fan-in as N grows"), fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _count(x: float) -> str:
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:g}{suffix}"
    return f"{x:g}"


def write(doc: dict[str, Any], systems: tuple[str, ...], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "per_task.png", directory / "growth.png"]
    per_task(doc, systems, paths[0])
    growth(doc, systems, paths[1])
    return paths
