"""Tasks: functions made into workflow nodes with `@task`.

A `Task` is a node: an id, the function, and how to run it. Using one task object
several times in a workflow refers to one node. ``t(task_id="x", **bound)`` makes
another instance of the same function with its own id and bound keyword arguments.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from graflow_async.define.compose import Composable
from graflow_async.define.limits import check_limits, check_priority, fixed_wants
from graflow_async.define.policies import RetryPolicy
from graflow_async.exceptions import GraphError
from graflow_async.options import number, whole

_MISSING: Any = object()
#: the `bound` and `handler_kwargs` of every task that has none (never mutated: the
#: runtime copies before changing, and hands handlers copies)
_NO_ARGS: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter the runtime resolves for a task function."""

    name: str
    default: Any = _MISSING

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


def _params(func: Callable[..., Any], inject_context: bool) -> tuple[Param, ...]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of {func!r}: {exc}") from exc
    params = list(sig.parameters.values())
    if inject_context:
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            raise TypeError(
                f"{func.__qualname__} has inject_context=True, so its first parameter must "
                "take the context positionally"
            )
        params = params[1:]
    out = []
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"{func.__qualname__}: positional-only parameter {p.name!r} cannot be resolved by name")
        out.append(Param(p.name, p.default if p.default is not p.empty else _MISSING))
    return tuple(out)


class _Analysis(NamedTuple):
    """What a function's signature and name say, computed once per function (and
    context flag): a 1,000,000-task workflow of one function reads its signature once."""

    params: tuple[Param, ...]
    is_async: bool
    ref: str | None


_analyses: weakref.WeakKeyDictionary[Any, dict[bool, _Analysis]] = weakref.WeakKeyDictionary()


def _analysis(func: Callable[..., Any], inject_context: bool) -> _Analysis:
    global _last
    if _last is not None and _last[0] is func and _last[1] is inject_context:
        return _last[2]  # tasks are mostly made in a row from one function
    found = _lookup(func, inject_context)
    _last = (func, inject_context, found)
    return found


_last: tuple[Any, bool, _Analysis] | None = None


def _lookup(func: Callable[..., Any], inject_context: bool) -> _Analysis:
    try:
        per_flag = _analyses.get(func)
    except TypeError:  # not hashable or not weakly referable: analysed each time
        return _Analysis(_params(func, inject_context), _is_async(func), _ref(func))
    if per_flag is None:
        per_flag = {}
        try:
            _analyses[func] = per_flag
        except TypeError:
            pass
    found = per_flag.get(inject_context)
    if found is None:
        found = per_flag[inject_context] = _Analysis(_params(func, inject_context), _is_async(func), _ref(func))
    return found


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func)


def _ref(func: Callable[..., Any]) -> str | None:
    """``module:qualname`` of `func` when another process can import it by that path."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def unreachable_reason(task: Task) -> str | None:
    """Why workers could not import `task`'s function, or None if they can."""
    module = getattr(task.func, "__module__", None)
    qualname = getattr(task.func, "__qualname__", "")
    if module == "__main__":
        return "it is defined in __main__ (a script); move it to an importable module"
    if "<lambda>" in qualname:
        return "it is a lambda"
    if "<locals>" in qualname:
        return "it is defined inside a function (a closure)"
    if not module:
        return "its module is unknown"
    return None


def _option(check: Any, name: str, value: Any, **limits: Any) -> Any:
    try:
        return check(name, value, **limits)
    except TypeError as exc:  # a task's options are all checked as values
        raise ValueError(str(exc)) from None


_loaded: dict[str, Task] = {}


def load_task(ref: str, *, import_module: bool = True) -> Task:
    """The task defined at module level as ``module:name`` (cached once found);
    LookupError saying why when there is none. With ``import_module=False`` only a
    module this process has imported already is looked in (nothing is imported because
    a message said so)."""
    task = _loaded.get(ref)
    if task is not None:
        return task
    module_name, _, name = ref.partition(":")
    if not module_name or not name.isidentifier():
        raise LookupError(f"{ref!r} is not an import path (module:name)")
    import importlib
    import sys

    module = sys.modules.get(module_name)
    if module is None:
        if not import_module:
            raise LookupError(f"{ref}: module {module_name!r} is not imported by this process")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LookupError(f"cannot import {ref}: {type(exc).__name__}: {exc}") from exc
    obj = vars(module).get(name)
    if not isinstance(obj, Task):
        raise LookupError(f"{ref} is {'missing' if obj is None else type(obj).__name__}, not a @task")
    _loaded[ref] = obj
    return obj


class Task(Composable):
    """A workflow node wrapping a function. Made by `@task`; see SPEC section 1."""

    __slots__ = (
        "__weakref__",
        "bound",
        "fixed_wants",
        "func",
        "handler",
        "handler_kwargs",
        "id",
        "inject_context",
        "is_async",
        "limits",
        "max_cycles",
        "params",
        "priority",
        "ref",
        "retry_policy",
        "timeout",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        id: str | None = None,
        inject_context: bool = False,
        retry_policy: RetryPolicy | None = None,
        max_retries: int | None = None,
        handler: Any = "direct",
        handler_kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        max_cycles: int | None = None,
        bound: dict[str, Any] | None = None,
        limits: Any = None,
        priority: int | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"@task needs a function, got {func!r}")
        task_id = id if id is not None else getattr(func, "__name__", None)
        if not isinstance(task_id, str) or not task_id:
            raise GraphError(f"a task id must be a non-empty string, got {task_id!r}")
        if retry_policy is not None and max_retries is not None:
            raise ValueError(f"task {task_id!r}: give retry_policy or max_retries, not both")
        if max_retries is not None:
            retry_policy = RetryPolicy(max_retries=max_retries)
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"task {task_id!r}: retry_policy must be a RetryPolicy, got {retry_policy!r}")
        if timeout is not None:
            timeout = _option(number, f"task {task_id!r}: timeout", timeout, minimum=0.0, above=True)
        if max_cycles is not None:
            max_cycles = _option(whole, f"task {task_id!r}: max_cycles", max_cycles, minimum=1)
        self.id = task_id
        self.func = func
        self.max_cycles = max_cycles
        self.inject_context = inject_context
        self.retry_policy = retry_policy
        self.handler = handler
        self.handler_kwargs = dict(handler_kwargs) if handler_kwargs else _NO_ARGS
        if handler == "docker":  # HandlerError for a bad or unknown option, where the task is declared
            from graflow_async.define.docker_options import parse

            parse(self.handler_kwargs, task_id)
        self.timeout = float(timeout) if timeout is not None else None
        self.bound = dict(bound) if bound else _NO_ARGS
        self.params, self.is_async, self.ref = _analysis(func, inject_context)
        self.limits = check_limits(task_id, limits, (p.name for p in self.params)) if limits is not None else ()
        self.fixed_wants = fixed_wants(task_id, self.limits)  # what each attempt asks of limits without keys
        self.priority = None if priority is None else check_priority(f"task {task_id!r}: priority", priority)

    # --- instances -------------------------------------------------------------
    def __call__(self, *args: Any, task_id: str | None = None, **kwargs: Any) -> Any:
        """Another instance with its own id and bound kwargs, or a plain call.

        With `task_id`, or inside a workflow block: a new `Task` with `kwargs` bound.
        Outside a block without `task_id`: calls the function itself.
        """
        from graflow_async.define.graph import current_workflow

        wf = current_workflow()
        if task_id is None and wf is None:
            return self.func(*args, **kwargs)
        if args:
            raise TypeError(f"task {self.id!r}: bind instance arguments by keyword, e.g. {self.id}(x=1)")
        if task_id is None:
            assert wf is not None
            task_id = wf.auto_id(self.id)
        elif wf is not None:
            wf.claim_id(task_id)
        return self.instance(task_id, **kwargs)

    def instance(self, task_id: str, **bound: Any) -> Task:
        """A new task for the same function, with id `task_id` and `bound` kwargs added."""
        return Task(
            self.func,
            id=task_id,
            inject_context=self.inject_context,
            retry_policy=self.retry_policy,
            handler=self.handler,
            handler_kwargs=self.handler_kwargs,
            timeout=self.timeout,
            max_cycles=self.max_cycles,
            bound={**self.bound, **bound},
            limits=self.limits,
            priority=self.priority,
        )

    def __repr__(self) -> str:
        return f"<Task {self.id}>"


_new = object.__new__


_OPTIONS = frozenset(
    {
        "id",
        "inject_context",
        "retry_policy",
        "max_retries",
        "handler",
        "handler_kwargs",
        "timeout",
        "max_cycles",
        "limits",
        "priority",
    }
)


@overload
def task(func: Callable[..., Any], /, **options: Any) -> Task: ...  # task(f), task(f, id="x", ...)
@overload
def task(id: str | None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...


def task(func_or_id: Any = None, /, *, id: Any = _MISSING, **options: Any) -> Any:
    """Make a function a workflow task: ``@task``, ``@task()``, ``@task("id")``,
    ``@task(id="id", inject_context=..., retry_policy=..., max_retries=...,
    handler=..., handler_kwargs=..., timeout=..., max_cycles=..., limits=..., priority=...)``."""
    if not options and type(id) is str and id and callable(func_or_id) and not isinstance(func_or_id, Task):
        # task(f, id="x"), as a million-task workflow makes them: Task(f, id="x") made
        # here, every option at its default (none to check, no keywords to bind)
        t: Task = _new(Task)
        t.id = id
        t.func = func_or_id
        t.max_cycles = t.retry_policy = t.timeout = t.priority = None
        t.limits = ()
        t.fixed_wants = None
        t.inject_context = False
        t.handler = "direct"
        t.handler_kwargs = t.bound = _NO_ARGS
        last = _last  # (`_analysis`, inline: tasks are mostly made in a row from one function)
        found = last[2] if last is not None and last[0] is func_or_id and not last[1] else None
        t.params, t.is_async, t.ref = found or _analysis(func_or_id, False)
        return t
    if id is not _MISSING:
        options = {"id": id, **options}
    if options and not _OPTIONS.issuperset(options):
        unknown = options.keys() - _OPTIONS
        raise TypeError(f"task() got unexpected keyword(s): {', '.join(sorted(unknown))}")
    if callable(func_or_id) and not isinstance(func_or_id, Task):
        return Task(func_or_id, **options)
    if isinstance(func_or_id, Task):
        raise TypeError(f"{func_or_id!r} is already a task")
    if func_or_id is not None:
        if not isinstance(func_or_id, str):
            raise TypeError(f"task() takes a function or an id string, got {func_or_id!r}")
        if "id" in options:
            raise TypeError("task(): give the id once, positionally or as id=")
        options["id"] = func_or_id

    def decorate(func: Callable[..., Any]) -> Task:
        return Task(func, **options)

    return decorate
