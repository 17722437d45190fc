"""`make bench`: every scenario on graflow-async, plain asyncio (the floor), Graflow 0.2.0
and LangGraph (with and without its in-memory checkpointer), then the detail suites.

    python -m benchmarks                      # everything -> benchmarks/results/
    python -m benchmarks --quick              # smaller N, 2 runs: a smoke pass
    python -m benchmarks chain-10k            # one scenario (or a group: chain, fan, growth, ...)
    python -m benchmarks checkpoints          # one detail suite
    python -m benchmarks fan --systems graflow-async,asyncio
    python -m benchmarks --list               # every name

A full run (no names, all systems, not --quick) writes ``benchmarks/results/``
(``latest.json``, ``latest.md``, ``per_task.png``, ``growth.png``); any other run writes
``benchmarks/results/partial/``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from . import ROOT, output, plots, scenarios, suites
from .harness import CAP_S
from .matrix import Matrix

RESULTS = ROOT / "benchmarks" / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="scenarios, groups of scenarios or detail suites (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller N and 2 runs after the warm-up")
    parser.add_argument(
        "--systems", default=",".join(scenarios.SYSTEMS), help=f"comma-separated, of {', '.join(scenarios.SYSTEMS)}"
    )
    parser.add_argument("--cap", type=float, default=CAP_S, help="seconds a run may take (default 60)")
    parser.add_argument("--no-details", action="store_true", help="skip the detail suites")
    parser.add_argument("--out", type=Path, help="where to write (default: results/ or results/partial/)")
    parser.add_argument("--list", action="store_true", help="list the scenarios, groups and suites")
    args = parser.parse_args(argv)
    args.systems = tuple(s for s in scenarios.SYSTEMS if s in args.systems.split(","))
    unknown = set(args.names) - scenarios.known_names() - suites.known_names()
    if unknown:
        parser.error(f"unknown name(s): {', '.join(sorted(unknown))} (see --list)")
    return args


def print_list() -> None:
    print("scenarios [groups that select them]:")
    for s in scenarios.SCENARIOS:
        print(f"  {s.name:<16} {s.describe(False)} [{', '.join(s.groups)}]")
    print("detail suites:")
    for suite in suites.SUITES:
        aliases = f" [{', '.join(suite.aliases)}]" if suite.aliases else ""
        print(f"  {suite.name:<16} {suite.doc}{aliases}")


def progress(console: Any) -> Any:
    def show(scenario: scenarios.Scenario, system: str, result: dict[str, Any]) -> None:
        if result.get("status") == "ok":
            text = f"{output.fmt(result['value'])} {scenario.unit}, {result['peak_rss_mib']:.0f} MiB"
        else:
            text = f"{result.get('status')}: {output.reason_of(result)[:100]}"
        console.print(f"  {scenario.name:<16} {scenarios.LABELS[system]:<26} {text}", highlight=False)

    return show


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "repeat": scenarios.QUICK_REPEAT if args.quick else scenarios.REPEAT,
        "repeat_by_scenario": {s.name: s.runs(args.quick) for s in scenarios.SCENARIOS},
        "statistic": "median of the timed runs, after one warm-up run; each (scenario, system) in a fresh process",
        "cap_s": args.cap,
        "cap_rule": "a run over the cap, or projected over it from the previous N (µs/task x N), is not measured",
        "hitl": "answers given after a pause uniform in [0, 0.5 s) (the same sequence for every system); "
        "latency from the answer's time stamp to the asking task having it",
        "peak_rss": "ru_maxrss of the scenario process (for Redis scenarios: the driver's, not the workers')",
    }


def write(doc: dict[str, Any], systems: tuple[str, ...], out: Path, console: Any) -> None:
    output.write_json(doc, out / "latest.json")
    (out / "latest.md").write_text(output.markdown_table(doc, systems))
    written = [out / "latest.json", out / "latest.md"]
    if doc["scenarios"]:
        written += plots.write(doc, systems, out)
    console.print("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written))


def main(argv: list[str]) -> None:
    from rich.console import Console

    args = parse(argv)
    if args.list:
        print_list()
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    chosen = scenarios.select(args.names)
    chosen_suites = [] if args.no_details else suites.select(args.names)
    header = {"machine": output.machine(), "versions": output.versions(args.systems)}
    console.print(
        f"[bold]make bench[/bold] on {header['machine'].get('cpus')} x {header['machine'].get('cpu')}, "
        f"commit {header['versions']['commit']}{' (quick)' if args.quick else ''}"
    )
    matrix = Matrix(quick=args.quick, cap=args.cap, systems=args.systems)
    matrix.run_all(chosen, progress(console))
    details: dict[str, Any] = {}
    for suite in chosen_suites:
        console.print(f"  detail suite {suite.name} ...")
        details[suite.name] = suite.run(args.quick)
    header["machine"]["loadavg_1min_end"] = os.getloadavg()[0]
    doc = output.document(
        chosen, matrix.results, quick=args.quick, settings=settings(args), details=details, header=header
    )
    full = not args.names and not args.quick and args.systems == scenarios.SYSTEMS
    write(doc, args.systems, args.out or (RESULTS if full else RESULTS / "partial"), console)
    if chosen:
        console.print(output.rich_table(doc, args.systems))
        for line in output.footnotes(doc):
            console.print(f"  {line}", highlight=False)
    for suite in chosen_suites:
        console.rule(suite.name)
        suite.print_table(details[suite.name])


if __name__ == "__main__":
    main(sys.argv[1:])
