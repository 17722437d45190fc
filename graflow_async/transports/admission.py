"""Whether an attempt may start under its limits (SPEC 11): the decision, as a pure
function of what the limits hold and the time. The in-process limiter keeps a
`LimitBook` and asks it; the Redis limiter's admission script (`redis.limits`) makes
the same decision on the server, under the same rules:

- a `CONCURRENCY` want holds one of `amount` slots of its ident until released (or,
  held by a worker that died, until its lease lapses); a holder already holding it
  (an attempt delivered again) keeps its slot;
- a `RATE` want counts a start: at most `amount` starts in any window of `per` seconds
  (kept `RATE_SLACK` wider);
- an attempt takes all its wants at once or none of them.

Not admitted, the answer is when trying again is worth it: the time the oldest start
leaves a full rate window, or `FREED` (when a slot is given back).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence

from graflow_async.define.limits import CONCURRENCY, Want

FREED = math.inf  # not before a slot is given back
#: seconds a rate window is kept wider than declared: a start is admitted a moment before
#: its task reads its clock, and never at the very edge of another start's window
RATE_SLACK = 0.01


class LimitBook:
    """What the limits of one process hold: slots by holder, and recent starts."""

    def __init__(self) -> None:
        self.holders: dict[str, dict[Hashable, float]] = {}  # ident -> holder -> when its hold lapses
        self._soonest: dict[str, float] = {}  # ident -> no hold of it lapses before this
        self.starts: dict[str, deque[float]] = {}  # ident -> start times, oldest first

    def admit(self, holder: Hashable, wants: Sequence[Want], now: float, lapses: float = math.inf) -> float | None:
        """Take `wants` for `holder` at `now` (its slots held until `lapses`): None, or the
        time to try again (`FREED`: when a slot is given back)."""
        wait = 0.0
        for want in wants:
            if want.kind == CONCURRENCY:
                held = self._held(want.ident, now)
                if holder not in held and len(held) >= want.amount:
                    wait = FREED
            else:
                per = want.per + RATE_SLACK
                starts = self._starts(want.ident, now, per)
                if len(starts) >= want.amount:
                    wait = max(wait, starts[0] + per)
        if wait:
            return wait
        for want in wants:
            if want.kind == CONCURRENCY:
                self.holders.setdefault(want.ident, {})[holder] = lapses
                if lapses < self._soonest.get(want.ident, math.inf):  # (in-process holds never lapse)
                    self._soonest[want.ident] = lapses
            else:
                self.starts.setdefault(want.ident, deque()).append(now)
        return None

    def release(self, holder: Hashable, wants: Sequence[Want]) -> list[str]:
        """`holder` gives its slots back: the idents that have a slot free now."""
        freed = []
        for want in wants:
            held = self.holders.get(want.ident)
            if want.kind == CONCURRENCY and held is not None and held.pop(holder, None) is not None:
                freed.append(want.ident)
                if not held:
                    del self.holders[want.ident]
                    self._soonest.pop(want.ident, None)
        return freed

    def renew(self, holder: Hashable, wants: Sequence[Want], lapses: float) -> None:
        """`holder`, still running, holds its slots until `lapses`."""
        for want in wants:
            held = self.holders.get(want.ident)
            if want.kind == CONCURRENCY and held is not None and holder in held:
                held[holder] = lapses

    def running(self, ident: str, now: float) -> int:
        """Slots of `ident` held at `now`."""
        return len(self._held(ident, now))

    def _held(self, ident: str, now: float) -> dict[Hashable, float]:
        held = self.holders.get(ident)
        if held is None:
            return {}
        if now >= self._soonest.get(ident, math.inf):  # some hold may have lapsed: look
            for h in [h for h, until in held.items() if until <= now]:
                del held[h]
            self._soonest[ident] = min(held.values(), default=math.inf)
        if not held:
            del self.holders[ident]
            self._soonest.pop(ident, None)
            return {}
        return held

    def _starts(self, ident: str, now: float, per: float) -> deque[float]:
        starts = self.starts.get(ident)
        if starts is None:
            return deque()
        while starts and starts[0] <= now - per:
            starts.popleft()
        if not starts:
            del self.starts[ident]
        return starts
