"""Building workflows: ``with workflow(...)``, ``>>``, ``|``, `chain`, `parallel`.

An expression is a tree of components: tasks, chains (``a >> b``: items in order)
and parallel groups (``a | b``: members side by side). Inside a workflow block each
operator registers its operands and the link it makes with the block's workflow as
it is evaluated, so ``a >> b`` then ``b >> c`` connect. Fragments built outside a
block join a workflow through ``wf.add(fragment)``. `compile.compile_workflow`
turns what a workflow holds into the runtime graph.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Union, cast

from graflow_async.define.collector import collect_as_before, collect_less
from graflow_async.define.compose import Composable
from graflow_async.define.policies import (
    CoordinationBackend,
    GroupExecutionPolicy,
    StrictGroupPolicy,
    resolve_group_policy,
)
from graflow_async.define.tasks import Task
from graflow_async.exceptions import GraphError

if TYPE_CHECKING:
    from graflow_async.define.compile import CompiledGraph

Node = Union[Task, "ParallelGroup"]  # what a link joins
Component = Union[Task, "Chain", "ParallelGroup"]

_current: ContextVar[Workflow | None] = ContextVar("graflow_async_workflow", default=None)


def current_workflow() -> Workflow | None:
    """The workflow of the innermost ``with workflow(...)`` block, if any."""
    return _current.get()


def _check(operand: Any, op: str) -> Component:
    if isinstance(operand, Task | Chain | ParallelGroup):
        return operand
    what = getattr(operand, "__qualname__", None) or type(operand).__name__
    hint = " (decorate it with @task)" if callable(operand) else ""
    raise GraphError(f"cannot use {what!r} with `{op}`: it is not a task, chain or group{hint}")


def _first(c: Component) -> Node:
    return c.first if isinstance(c, Chain) else c


def _last(c: Component) -> Node:
    return c.last if isinstance(c, Chain) else c


class Chain(Composable):
    """Components run one after another (``a >> b >> c``). Immutable to its users.

    Chains built by repeated ``>>`` share one list and append to it, so a loop
    building a 10,000-task chain stays linear.
    """

    __slots__ = ("_items", "_n", "_origin")

    def __init__(self, items: list[Node], n: int, origin: Workflow | None) -> None:
        self._items = items
        self._n = n
        self._origin = origin

    @property
    def items(self) -> tuple[Node, ...]:
        return tuple(self._items[: self._n])

    @property
    def first(self) -> Node:
        return self._items[0]

    @property
    def last(self) -> Node:
        return self._items[self._n - 1]

    def _extended(self, other: Component, origin: Workflow | None) -> Chain:
        extra = other.items if isinstance(other, Chain) else (other,)
        if len(self._items) == self._n:  # nobody extended this chain yet: share the list
            items = self._items
        else:
            items = self._items[: self._n]
        items.extend(extra)
        return Chain(items, len(items), origin)

    def __repr__(self) -> str:
        return " >> ".join(repr(i) for i in self.items)


class ParallelGroup(Composable):
    """Members run side by side; successors run once the group's policy accepts it."""

    __slots__ = ("backend", "backend_config", "members", "name", "policy")

    def __init__(self, members: list[Component]) -> None:
        self.members = members
        self.name: str | None = None
        self.policy: GroupExecutionPolicy = StrictGroupPolicy()
        self.backend = CoordinationBackend.LOCAL
        self.backend_config: dict[str, Any] | None = None

    def set_group_name(self, name: str) -> ParallelGroup:
        """Name the group (default ``ParallelGroup_<n>`` per workflow); returns the group."""
        if not isinstance(name, str) or not name:
            raise GraphError(f"a group name must be a non-empty string, got {name!r}")
        self.name = name
        return self

    def with_execution(
        self,
        backend: CoordinationBackend | str | None = None,
        backend_config: dict[str, Any] | None = None,
        policy: GroupExecutionPolicy | str = "strict",
    ) -> ParallelGroup:
        """Set where members run and how the group's outcome is judged; returns the group."""
        resolved = resolve_group_policy(policy)
        wf = current_workflow()
        ids = [member_id(m, wf.auto_group_names if wf else None) for m in self.members]
        if "?" not in ids:  # otherwise the workflow checks it when it compiles
            resolved.validate(ids)
        self.policy = resolved
        self.backend = CoordinationBackend.resolve(backend)
        self.backend_config = dict(backend_config) if backend_config else None
        return self

    def __or__(self, other: Any) -> ParallelGroup:
        other = _check(other, "|")
        self.members.append(other)
        wf = current_workflow()
        if wf is not None and wf.holds(self):
            wf.register(other)
        return self

    def __repr__(self) -> str:
        return f"<ParallelGroup {self.name or '?'}: {' | '.join(map(repr, self.members))}>"


def member_id(c: Component, names: dict[int, str] | None = None) -> str:
    """The id a group uses for a member: a task's id, a group's name, a chain's last item's.

    `names` gives the automatic names a workflow gave its unnamed groups."""
    node = _last(c)
    if isinstance(node, Task):
        return node.id
    return node.name or (names or {}).get(id(node), "?")


def sequence(left: Any, right: Any) -> Chain:
    """``left >> right``."""
    left, right = _check(left, ">>"), _check(right, ">>")
    wf = current_workflow()
    if wf is not None:
        wf.register(left)
        wf.register(right)
        wf.link(_last(left), _first(right))
    if isinstance(left, Chain):
        return left._extended(right, wf)
    items: list[Node] = [left, *(right.items if isinstance(right, Chain) else (right,))]
    return Chain(items, len(items), wf)


def group_of(left: Any, right: Any) -> ParallelGroup:
    """``left | right``: a new group of both (``group | x`` appends to the group instead)."""
    left, right = _check(left, "|"), _check(right, "|")
    group = ParallelGroup([left, right])
    wf = current_workflow()
    if wf is not None:
        wf.register(group)
    return group


def chain(*components: Any) -> Chain:
    """``chain(a, b, c)`` is ``a >> b >> c``."""
    if not components:
        raise GraphError("chain() needs at least one task")
    first = _check(components[0], ">>")
    result = first if isinstance(first, Chain) else Chain([first], 1, None)
    if len(components) == 1:
        wf = current_workflow()
        if wf is not None:
            wf.register(first)
        return result
    for c in components[1:]:
        result = sequence(result, c)
    return result


def parallel(*components: Any) -> ParallelGroup:
    """``parallel(a, b, c)`` is ``a | b | c``."""
    if not components:
        raise GraphError("parallel() needs at least one task")
    if set(map(type, components)) == {Task}:  # the common case, checked at once
        members: list[Component] = list(components)
    else:
        members = [_check(c, "|") for c in components]
    group = ParallelGroup(members)
    wf = current_workflow()
    if wf is not None:
        wf.register(group)
    return group


class Workflow:
    """A named graph of tasks. Build it in a ``with workflow(name) as wf:`` block."""

    def __init__(self, name: str, *, module: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise GraphError(f"a workflow name must be a non-empty string, got {name!r}")
        self.name = name
        #: the module that defined it, so a checkpoint can record ``module:attr``
        self.module = module if module is not None else sys._getframe(1).f_globals.get("__name__")
        self.tasks: dict[str, Task] = {}
        self.groups: list[ParallelGroup] = []
        self.links: list[tuple[Node, Node]] = []
        self._link_keys: set[tuple[int, int]] = set()
        self._members_done: dict[int, int] = {}  # id of a group -> its members registered
        self.auto_group_names: dict[int, str] = {}
        self._auto_ids: dict[str, int] = {}
        self._claimed: set[str] = set()
        self._tokens: list[Token[Workflow | None]] = []
        self._compiled: CompiledGraph | None = None

    # --- the block ---------------------------------------------------------------
    def __enter__(self) -> Workflow:
        self._tokens.append(_current.set(self))
        collect_less()  # until the block closes (a million new tasks: see define.collector)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _current.reset(self._tokens.pop())
        try:
            if exc_type is None:
                self.compile()  # GraphError here, at build time, for cycles and the like
        finally:
            collect_as_before()

    # --- building ---------------------------------------------------------------
    def add(self, *components: Any) -> Workflow:
        """Add tasks, chains or groups (and everything they link) to the workflow."""
        for c in components:
            self.register(_check(c, "add"))
        return self

    def holds(self, node: Node) -> bool:
        if isinstance(node, Task):
            return self.tasks.get(node.id) is node
        return id(node) in self._members_done

    def register(self, c: Component) -> None:
        """Make `c` and what it contains part of this workflow."""
        if isinstance(c, Task):
            known = self.tasks.get(c.id)
            if known is None:
                self.tasks[c.id] = c
                self._compiled = None
            elif known is not c:
                raise GraphError(
                    f"duplicate task id {c.id!r} in workflow {self.name!r}: two different "
                    "tasks have it (use t(task_id=...) for another instance)"
                )
        elif isinstance(c, ParallelGroup):
            done = self._members_done.get(id(c))
            if done is None:
                done = self._members_done[id(c)] = 0
                self.groups.append(c)
                self._compiled = None
                # numbered per workflow: one group object may serve several workflows
                self.auto_group_names[id(c)] = f"ParallelGroup_{len(self.groups)}"
            if done < len(c.members):
                self._register_members(c, done)
        else:
            if c._origin is self:
                return  # its links were registered as it was built
            items = c.items
            for item in items:
                self.register(item)
            for a, b in itertools.pairwise(items):
                self.link(a, b)

    def _register_members(self, g: ParallelGroup, done: int) -> None:
        """Register the members of `g` after its first `done`. Members that are all tasks
        are registered once: a group's tasks never change, and members it gains come
        after (so a million-task group is not walked again each time it is used)."""
        members = g.members[done:] if done else g.members
        if set(map(type, members)) != {Task}:
            for m in members:
                self.register(m)
            return
        tasks = self.tasks
        new = {m.id: m for m in cast("list[Task]", members)}
        if len(new) == len(members) and tasks.keys().isdisjoint(new.keys()):
            tasks.update(new)  # all new, with distinct ids: in bulk
            self._compiled = None
        else:  # one by one, which also says what is wrong
            for m in members:
                if type(m) is not Task or tasks.get(m.id) is not m:  # (a task it has: nothing to do)
                    self.register(m)
        self._members_done[id(g)] = done + len(members)

    def group_name(self, group: ParallelGroup) -> str:
        """The group's own name, else the one this workflow numbered it with."""
        return group.name or self.auto_group_names[id(group)]

    def link(self, a: Node, b: Node) -> None:
        key = (id(a), id(b))
        if key not in self._link_keys:
            self._link_keys.add(key)
            self.links.append((a, b))
            self._compiled = None

    def claim_id(self, task_id: str) -> None:
        """Note an id given to an instance made in this block, so `auto_id` avoids it."""
        self._claimed.add(task_id)

    def auto_id(self, base: str) -> str:
        """A fresh id ``<base>_<n>`` for an instance made without ``task_id``."""
        n = self._auto_ids.get(base, 0)
        while True:
            n += 1
            candidate = f"{base}_{n}"
            if candidate not in self.tasks and candidate not in self._claimed:
                self._auto_ids[base] = n
                self._claimed.add(candidate)
                return candidate

    def compile(self) -> CompiledGraph:
        """The runtime graph (cached until the workflow changes); GraphError if invalid."""
        if self._compiled is None:
            from graflow_async.define.compile import compile_workflow

            self._compiled = compile_workflow(self)
        return self._compiled

    def to_mermaid(self, direction: str = "TD") -> str:
        """The workflow as Mermaid flowchart text (``flowchart TD``): a node per task
        (``t<n>``, labelled with its id), a subgraph per parallel group (``g<n>``, titled
        with its name, nested as the groups are), and an arrow per link, drawn to or from
        a group's subgraph when the link joins a group. Tasks added while a run goes
        (`next_task`) are not part of the workflow, so not drawn."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
        refs: dict[int, str] = {id(t): f"t{i}" for i, t in enumerate(self.tasks.values())}
        refs.update({id(g): f"g{i}" for i, g in enumerate(self.groups)})
        parent: dict[int, int] = {}  # id of a task or group -> id of the group it sits in
        for group in self.groups:
            for member in group.members:
                for node in member.items if isinstance(member, Chain) else (member,):
                    parent.setdefault(id(node), id(group))
        lines = [f"flowchart {direction}"]
        self._mermaid_block(None, "    ", refs, parent, lines)
        lines += [f"    {refs[id(a)]} --> {refs[id(b)]}" for a, b in self.links]
        return "\n".join(lines) + "\n"

    def _mermaid_block(
        self, container: int | None, indent: str, refs: dict[int, str], parent: dict[int, int], lines: list[str]
    ) -> None:
        lines += [
            f'{indent}{refs[id(t)]}["{_mermaid_label(t.id)}"]'
            for t in self.tasks.values()
            if parent.get(id(t)) == container
        ]
        for group in self.groups:
            if parent.get(id(group)) == container:
                lines.append(f'{indent}subgraph {refs[id(group)]}["{_mermaid_label(self.group_name(group))}"]')
                self._mermaid_block(id(group), indent + "    ", refs, parent, lines)
                lines.append(f"{indent}end")

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self.tasks)} tasks, {len(self.groups)} groups>"


_DIRECTIONS = ("TD", "TB", "BT", "LR", "RL")
_MERMAID_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "\n": " ", "\r": " "}


def _mermaid_label(text: str) -> str:
    """`text` inside a quoted Mermaid label: its quotes, brackets and ``#`` as entities."""
    return "".join(_MERMAID_ENTITIES.get(c, c) for c in text)


def workflow(name: str) -> Workflow:
    """A new workflow; use it as ``with workflow("name") as wf:``."""
    return Workflow(name, module=sys._getframe(1).f_globals.get("__name__"))
