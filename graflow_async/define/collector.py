"""Keeping the garbage collector from walking a workflow block's growing heap again and
again while it is built (a run's own objects are kept off it by `run.frozen_heap`)."""

from __future__ import annotations

import gc
import threading

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
