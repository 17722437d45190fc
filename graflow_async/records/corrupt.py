"""What every store does with a record it cannot read back: leave it out of listings,
say so to the caller (`Listing.skipped`), and log it once per version, naming where it
is (its id, file or key) and what is wrong, never what it holds."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from graflow_async.logs import LibraryLog

T = TypeVar("T")
log = LibraryLog()
MAX_REPORTED = 10_000  # records remembered as logged; past this the memory starts over
MAX_SKIPPED = 1_000  # names a listing carries at most (it counts them all)


class Listing(list[T]):
    """A store's listing: a list of the records it could read, and `skipped`, the names of
    those it could not (their ids, or the files or keys they are in when the id cannot be
    known), at most `MAX_SKIPPED` of them; `skipped_count` counts them all."""

    __slots__ = ("skipped", "skipped_count")

    def __init__(self, items: Iterable[T] = (), skipped: Iterable[str] = ()) -> None:
        super().__init__(items)
        names = list(skipped)
        self.skipped: tuple[str, ...] = tuple(names[:MAX_SKIPPED])
        self.skipped_count = len(names)


def skipped_count(found: Iterable[Any]) -> int:
    """How many records a listing left out (0 for a plain list, from a store of elsewhere)."""
    return found.skipped_count if isinstance(found, Listing) else 0


class Reports:
    """Warnings about corrupt records, each logged once per version of the record (a file's
    size and time, a value's digest...), so that a listing every second does not repeat them."""

    def __init__(self, event: str) -> None:
        self.event = event
        self._logged: dict[str, Hashable] = {}

    def report(self, name: str, version: Hashable, reason: str, **where: str) -> None:
        """Log that record `name` (in `where`: path=... or key=...) is unreadable for
        `reason`, unless this version of it was logged already."""
        if self._logged.get(name, _NEVER) == version:
            return
        if len(self._logged) >= MAX_REPORTED:
            self._logged.clear()
        self._logged[name] = version
        log.warning(self.event, **{k: v[:1000] for k, v in where.items()}, error=reason[:300])


_NEVER = object()
