"""Keeping the garbage collector off what a large run holds for its whole length.

CPython's collector walks every tracked object at each full collection, and a run that
makes and drops a few short-lived objects per task triggers full collections again
and again (one each time the oldest generation has grown by a quarter). In a
300,000-task fan-out each of those walks goes over the workflow's 300,000 `Task`
objects and the run's per-node lists, none of which can become garbage while the run
goes on: measured, the collector took a quarter of the run's time, and the time per
task grew with the size of the workflow.

`frozen(nodes)` moves every object alive when a run of at least `FREEZE_AT` nodes
starts (its graph, its plan) to the collector's permanent generation (`gc.freeze`),
and back (`gc.unfreeze`) when the last such run ends; concurrent large runs share one
freeze. Objects made during the run are collected as usual. The cost: cyclic garbage
that already exists when a large run starts is freed only once it ends. Nothing is
done for smaller runs, nor when the application froze objects itself
(`gc.get_freeze_count()` above 0 when a large run starts): unfreezing would undo its
freeze.

While a workflow block is being built, `define.collector` keeps the collector from
walking the growing heap of new tasks again and again.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

FREEZE_AT = 50_000  # nodes of a run's graph

_lock = threading.Lock()
_runs = 0  # large runs under way while we hold a freeze


@contextlib.contextmanager
def frozen(nodes: int) -> Iterator[None]:
    """The run of a graph of `nodes` nodes happens inside: see the module docstring."""
    if nodes < FREEZE_AT or not _enter():
        yield
        return
    try:
        yield
    finally:
        _leave()


def _enter() -> bool:
    global _runs
    with _lock:
        if _runs == 0:
            if gc.get_freeze_count():
                return False  # the application's own freeze: leave it alone
            gc.freeze()
        _runs += 1
        return True


def _leave() -> None:
    global _runs
    with _lock:
        _runs -= 1
        if _runs == 0:
            gc.unfreeze()
