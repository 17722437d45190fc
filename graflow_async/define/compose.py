"""The operators that build workflows, shared by tasks, chains and groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graflow_async.define.graph import Chain, ParallelGroup


class Composable:
    """``a >> b`` (b after a) and ``a | b`` (side by side) for every workflow component."""

    __slots__ = ()

    def __rshift__(self, other: Any) -> Chain:
        from graflow_async.define.graph import sequence

        return sequence(self, other)

    def __rrshift__(self, other: Any) -> Chain:
        from graflow_async.define.graph import sequence

        return sequence(other, self)

    def __or__(self, other: Any) -> ParallelGroup:
        from graflow_async.define.graph import group_of

        return group_of(self, other)

    def __ror__(self, other: Any) -> ParallelGroup:
        from graflow_async.define.graph import group_of

        return group_of(other, self)
