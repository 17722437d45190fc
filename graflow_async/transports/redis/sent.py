"""The task entries a transport sent and no reply has answered yet, by the reply queue
that awaits them: what the reader looks up once their lease has passed (`reader.py`)."""

from __future__ import annotations

from collections import deque

CHECK_EVERY = 1.0  # seconds between looks at what is due
Key = tuple[int, int, int]  # (node, cycle, attempt) of a task
Item = tuple[str, Key, str, bytes, float]  # reply queue, key, stream, entry id, lease


class Sent:
    """Task entries sent and not yet answered, by the reply queue that awaits them."""

    def __init__(self) -> None:
        self.open: dict[str, dict[Key, bytes]] = {}
        self._due: deque[tuple[float, str, Key, str, bytes, float]] = deque()  # by due time, roughly
        self._missing: set[bytes] = set()

    def record(self, reply_to: str, key: Key, stream: str, entry_id: bytes, lease: float, now: float) -> None:
        self.open.setdefault(reply_to, {})[key] = entry_id
        self._due.append((now + lease, reply_to, key, stream, entry_id, lease))

    def settle(self, reply_to: str, key: Key) -> None:
        found = self.open.get(reply_to)
        if found is not None:
            found.pop(key, None)

    def forget(self, reply_to: str) -> None:
        self.open.pop(reply_to, None)

    def due(self, now: float) -> list[Item]:
        """The entries whose check is due, each still unanswered."""
        out = []
        while self._due and self._due[0][0] <= now:
            _, reply_to, key, stream, entry_id, lease = self._due.popleft()
            if self.open.get(reply_to, {}).get(key) == entry_id:
                out.append((reply_to, key, stream, entry_id, lease))
        return out

    def waiting(self, reply_to: str) -> bool:
        """Whether `reply_to` awaits answers to tasks it sent."""
        return bool(self.open.get(reply_to))

    def looked_up(self, item: Item, exists: bool, now: float) -> bool:
        """Note what a check found; True when the entry is lost (missing twice in a row)."""
        reply_to, key, stream, entry_id, lease = item
        if exists:
            self._missing.discard(entry_id)
            self._due.append((now + lease, reply_to, key, stream, entry_id, lease))
            return False
        if entry_id in self._missing:
            self._missing.discard(entry_id)
            self.settle(reply_to, key)
            return True
        self._missing.add(entry_id)  # its reply may be on its way: look again after one more read
        self._due.append((now + CHECK_EVERY, reply_to, key, stream, entry_id, lease))
        return False
