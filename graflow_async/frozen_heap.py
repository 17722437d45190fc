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

While a workflow block is being built, `collect_less` and `collect_as_before` keep
the collector from walking the growing heap of new tasks again and again (see there).
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


#: the collector's generation thresholds (at least) while a workflow block is open
BUILD_THRESHOLDS = (10_000, 100, 100)
_thresholds_lock = threading.Lock()
_gc_blocks = 0  # workflow blocks open, in every thread
_gc_before: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # thresholds before, ours


def collect_less() -> None:
    """A workflow block opens: collect the older generations rarely until it closes.

    Every `Task` is tracked by the cyclic collector, which walks the whole heap each
    time the oldest generation has grown by a quarter: a block making 1,000,000 tasks
    did so ten times (2.5 s of a 9 s build). Inside blocks the thresholds are at least
    `BUILD_THRESHOLDS`: young objects are still collected every 10,000 allocations,
    but garbage that reached the oldest generation waits for the blocks to close.
    Automatic collection switched off (a threshold of 0) stays off."""
    global _gc_blocks, _gc_before
    with _thresholds_lock:
        _gc_blocks += 1
        before = gc.get_threshold()
        if _gc_blocks == 1 and before[0] > 0:
            ours = tuple(map(max, before, BUILD_THRESHOLDS))
            gc.set_threshold(*ours)
            _gc_before = before, ours


def collect_as_before() -> None:
    """A workflow block closes: the last one open puts the thresholds back (unless the
    application set others meanwhile)."""
    global _gc_blocks, _gc_before
    with _thresholds_lock:
        _gc_blocks -= 1
        if _gc_blocks == 0 and _gc_before is not None:
            before, ours = _gc_before
            _gc_before = None
            if gc.get_threshold() == ours:
                gc.set_threshold(*before)
