"""What `make bench` writes: the rich table, ``latest.json`` (machine described) and a
Markdown copy of the table (``latest.md``, pasted into the main README)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .matrix import ratios
from .scenarios import LABELS, PEER_OF, Scenario


def machine() -> dict[str, Any]:
    """The machine measured: CPU, cores, memory, OS, Python, load."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1min_start": os.getloadavg()[0],
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")
        )
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def versions(systems: tuple[str, ...]) -> dict[str, Any]:
    """graflow-async's commit and versions, redis-server's, and each peer's venv."""
    import importlib.metadata

    from .peers import PEERS
    from .peers import versions as peer_versions
    from .redis_streams import git_commit

    out: dict[str, Any] = {"graflow-async": importlib.metadata.version("graflow-async"), "commit": git_commit()}
    try:
        server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
        out["redis-server"] = server.removeprefix("v=")
    except (OSError, IndexError):
        pass
    for peer in sorted({PEER_OF[s] for s in systems if s in PEER_OF}):
        try:
            out[peer] = peer_versions(PEERS[peer])
        except (OSError, subprocess.CalledProcessError) as exc:
            out[peer] = {"error": str(exc)}
    return out


def document(
    scenarios: list[Scenario],
    results: dict[str, dict[str, dict[str, Any]]],
    *,
    quick: bool,
    settings: dict[str, Any],
    details: dict[str, Any],
    header: dict[str, Any],
) -> dict[str, Any]:
    """The whole result as one JSON-able dict."""
    rows = []
    for s in scenarios:
        measured = results.get(s.name, {})
        rows.append(
            {
                "name": s.name,
                "title": s.describe(quick),
                "kind": s.kind,
                "runner": s.runner,
                "unit": s.unit,
                "n": s.size(quick),
                "results": measured,
                "ratios": ratios(measured),
            }
        )
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        **header,
        "settings": settings,
        "systems": LABELS,
        "scenarios": rows,
        "details": details,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


# --- cells ------------------------------------------------------------------------------------
def fmt(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def cell_lines(system: str, result: dict[str, Any], row_ratios: dict[str, dict[str, float]]) -> list[str]:
    """A table cell: the figure, its ratio to the floor, to graflow-async (peers), RSS."""
    status = result.get("status")
    if status != "ok":
        return [str(status)]
    lines = [fmt(result["value"])]
    mine = row_ratios.get(system, {})
    if "floor" in mine:
        lines.append(f"{mine['floor']:.1f}x floor")
    if system in PEER_OF and "graflow-async" in mine:
        lines.append(f"{mine['graflow-async']:.1f}x ours")
    lines.append(f"{result['peak_rss_mib']:.0f} MiB")
    return lines


def reason_of(result: dict[str, Any]) -> str:
    """Why a figure is missing: the reason given, or the last line of the error."""
    if result.get("reason"):
        return str(result["reason"])
    error = str(result.get("error", "")).strip().splitlines()
    return error[-1] if error else ""


def footnotes(doc: dict[str, Any]) -> list[str]:
    """One line per system and reason that figures are missing (n/a, capped, error)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for row in doc["scenarios"]:
        for system, r in row["results"].items():
            if r.get("status") in ("n/a", "capped", "error"):
                seen.setdefault((system, f"{r['status']}: {reason_of(r)}"), []).append(row["name"])
    return [f"{LABELS[system]}, {', '.join(names)}: {text}" for (system, text), names in seen.items()]


def rich_table(doc: dict[str, Any], systems: tuple[str, ...]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"µs per task (HITL: µs per answer), median of {doc['settings']['repeat']} runs after "
        "a warm-up; x floor = over plain asyncio; x ours = over graflow-async; peak RSS",
        show_lines=True,
    )
    table.add_column("scenario")
    table.add_column("N", justify="right")
    for system in systems:
        table.add_column(LABELS[system], justify="right")
    for row in doc["scenarios"]:
        cells = ["\n".join(cell_lines(s, row["results"].get(s, {"status": "-"}), row["ratios"])) for s in systems]
        table.add_row(f"{row['name']}\n{row['title']}", f"{row['n']:,}", *cells)
    return table


def markdown_table(doc: dict[str, Any], systems: tuple[str, ...]) -> str:
    """The table in Markdown: figure, (x floor), peak RSS per cell."""
    head = ["scenario", "N", *(LABELS[s] for s in systems)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in doc["scenarios"]:
        cells = []
        for system in systems:
            parts = cell_lines(system, row["results"].get(system, {"status": "-"}), row["ratios"])
            if len(parts) == 1:
                cells.append(parts[0])
            else:
                ratios_ = f" ({', '.join(parts[1:-1])})" if len(parts) > 2 else ""
                cells.append(f"**{parts[0]}**{ratios_} {parts[-1]}")
        lines.append(f"| {row['title']} | {row['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
