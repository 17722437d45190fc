"""The order of a compiled graph's nodes: Kahn's walk over index-based successor lists
(a fan-out to a group's members and a group's members sharing one successor released
at once), the cycle it reports when it cannot order every node, and the sinks.
Pure functions of lists of ints; `compile.compile_workflow` calls them."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from graflow_async.exceptions import GraphError


def zeros(counts: list[int]) -> list[int]:
    """Where `counts` holds 0, in order (looked for in C)."""
    found: list[int] = []
    with contextlib.suppress(ValueError):
        while True:
            found.append(counts.index(0, found[-1] + 1 if found else 0))
    return found


def topological_order(
    ids: list[str], succs: Sequence[Sequence[int]], npreds: list[int], starts: list[int]
) -> list[int]:
    """The nodes in a topological order (Kahn's algorithm, from `starts`, the nodes
    without predecessors); GraphError showing a cycle."""
    remaining = list(npreds)
    order = list(starts)
    done = 0
    while done < len(order):  # grows while it is walked
        ready = order[done : done + 4096]
        done += len(ready)
        if len(ready) >= 64:
            _release_many(ready, succs, remaining, order)
            continue
        for i in ready:
            after = succs[i]
            if len(after) > 64 and _release_row(after, remaining, order):
                continue
            for s in after:
                remaining[s] -= 1
                if remaining[s] == 0:
                    order.append(s)
    if len(order) == len(ids):
        return order
    cycle = _find_cycle(succs, {i for i, c in enumerate(remaining) if c > 0})
    path = " >> ".join(ids[i] for i in cycle)
    raise GraphError(f"the workflow has a cycle: {path}")


def _release_row(after: Sequence[int], remaining: list[int], order: list[int]) -> bool:
    """The successors of one node, when they are nodes numbered in a row each waiting for
    that node alone (a fan-out to a group's members), released at once; False if not."""
    lo, hi = min(after), max(after)
    k = hi + 1 - lo
    if k != len(after) or remaining[lo : hi + 1].count(1) != k:  # (successors are distinct)
        return False
    remaining[lo : hi + 1] = [0] * k
    order.extend(after)
    return True


def _release_many(ready: list[int], succs: Sequence[Sequence[int]], remaining: list[int], order: list[int]) -> None:
    """The edges of many nodes at once (a group's members), counted in C: a million
    members leading to one barrier make one decrement, not a million."""
    lo, hi = min(ready), max(ready)
    group = succs[lo : hi + 1] if hi + 1 - lo == len(ready) else list(map(succs.__getitem__, ready))
    if group.count(group[0]) == len(group):  # one successor tuple shared by all
        counts: Any = zip(group[0], repeat(len(group)))
    else:
        counts = Counter(chain.from_iterable(map(succs.__getitem__, ready))).items()
    for s, k in counts:
        remaining[s] -= k
        if remaining[s] == 0:
            order.append(s)


def _find_cycle(succs: Sequence[Sequence[int]], stuck: set[int]) -> list[int]:
    """One cycle among `stuck` (nodes Kahn's algorithm could not order), as a closed path."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in sorted(stuck):
        if start in state:
            continue
        state[start] = 1
        path = [start]
        stack = [iter(succs[start])]
        while stack:
            nxt = next((s for s in stack[-1] if s in stuck), None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succs[nxt]))
    return sorted(stuck)  # pragma: no cover - stuck nodes always hold a cycle


def sinks(succs: Sequence[Sequence[int]], nt: int, order: list[int]) -> tuple[int, ...]:
    """Tasks (nodes below `nt`) after which no other task can run (group barriers are
    see-through): the barriers judged first, walking the topological `order` backwards."""
    leads = bytearray(b"\x01") * nt + bytearray(len(succs) - nt)  # 1: a task can run at or after it
    for b in reversed([i for i in order if i >= nt]):  # the barriers
        leads[b] = any(map(leads.__getitem__, succs[b]))
    # a task is a sink when none of its successors leads on: the first one decides for most
    first_leads = bytes([leads[s[0]] if s else 0 for s in succs[:nt]])
    sinks = []
    t = first_leads.find(0)
    while t != -1:
        if not any(map(leads.__getitem__, succs[t])):
            sinks.append(t)
        t = first_leads.find(0, t + 1)
    return tuple(sinks)
