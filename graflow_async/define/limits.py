"""Flow control a task declares (SPEC 11): `Concurrency` and `RateLimit`.

    @task(limits=[Concurrency(2, key="{tenant}"), RateLimit(60, per=60.0)], priority=5)

A limit is shared by its `name` (default: the id of the task that declares it) and, with
a `key`, split by the value of that format string over the task's resolved arguments:
``Concurrency(1, key="{tenant}")`` lets each tenant run one at a time. What an attempt
asks of its limits is a tuple of `Want`, made when the attempt is about to start
(`wants`); where limits are kept and waited for is the transports' business
(`transports.limits`). A pure module: declarations in, wants out.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from graflow_async.options import number, whole

MAX_KEY = 200  # characters of a limit's identity; a longer one is kept as its digest
CONCURRENCY, RATE = "c", "r"


def _checked_key(option: str, key: Any) -> str | None:
    """A limit's key format string, its fields parsed (ValueError naming the option)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise ValueError(f"{option}: key must be a non-empty format string, got {key!r}")
    fields(key, option)
    return key


def fields(key: str, option: str = "key") -> list[str]:
    """The argument names format string `key` reads (``"{order.id}-{n}"``: order, n)."""
    try:
        parsed = list(string.Formatter().parse(key))
    except ValueError as exc:
        raise ValueError(f"{option}: {key!r} is not a format string ({exc})") from None
    out = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        head = field.split(".", 1)[0].split("[", 1)[0]
        if not head.isidentifier():
            raise ValueError(f"{option}: {key!r} must name the task's arguments (got field {field!r})")
        out.append(head)
    if not out:
        raise ValueError(f"{option}: {key!r} names no argument of the task (use name= to share one limit)")
    return out


def _checked_name(option: str, name: Any) -> str | None:
    if name is not None and (not isinstance(name, str) or not name or len(name) > MAX_KEY):
        raise ValueError(f"{option}: name must be a non-empty string of at most {MAX_KEY} characters, got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` attempts holding this limit run at once (per `key` value)."""

    limit: int
    key: str | None = None
    name: str | None = None

    def __init__(self, limit: int, *, key: str | None = None, name: str | None = None) -> None:
        object.__setattr__(self, "limit", whole("Concurrency limit", limit, minimum=1))
        object.__setattr__(self, "key", _checked_key("Concurrency key", key))
        object.__setattr__(self, "name", _checked_name("Concurrency name", name))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` attempts start in any window of `per` seconds (per `key` value)."""

    count: int
    per: float
    key: str | None = None
    name: str | None = None

    def __init__(self, count: int, *, per: float, key: str | None = None, name: str | None = None) -> None:
        object.__setattr__(self, "count", whole("RateLimit count", count, minimum=1))
        try:
            per = number("RateLimit per", per, minimum=0.0, above=True)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        object.__setattr__(self, "per", per)
        object.__setattr__(self, "key", _checked_key("RateLimit key", key))
        object.__setattr__(self, "name", _checked_name("RateLimit name", name))


Limit = Concurrency | RateLimit


class Want(NamedTuple):
    """What one attempt asks of one limit: `kind` `CONCURRENCY` (hold one of `amount`
    slots) or `RATE` (start one of `amount` per `per` seconds), under `ident` (the limit's
    name and key value: attempts with the same ident share it)."""

    kind: str
    ident: str
    amount: int
    per: float = 0.0
    name: str = ""  # the limit's name (its ident less the key's value): what metrics show


class LimitKeyError(ValueError):
    """An attempt's limit key cannot be formatted from its arguments; `field` names what
    was missing or wrong."""

    def __init__(self, task_id: str, key: str, field: str, reason: str) -> None:
        super().__init__(f"task {task_id!r}: limit key {key!r}: {reason}")
        self.field = field


def check_limits(task_id: str, limits: Any, params: Iterable[str]) -> tuple[Limit, ...]:
    """`limits` as declared by task `task_id` whose arguments are `params`: ValueError
    naming the option for anything else, or a key field that is no argument of it."""
    if limits is None:
        return ()
    if isinstance(limits, Concurrency | RateLimit):
        limits = [limits]
    if not isinstance(limits, Sequence) or isinstance(limits, str):
        raise ValueError(f"task {task_id!r}: limits must be a list of Concurrency and RateLimit, got {limits!r}")
    known, named = set(params), []
    for limit in limits:
        if not isinstance(limit, Concurrency | RateLimit):
            raise ValueError(f"task {task_id!r}: limits must hold Concurrency and RateLimit, got {limit!r}")
        for field in fields(limit.key) if limit.key else ():
            if field not in known:
                raise ValueError(
                    f"task {task_id!r}: limits: key {limit.key!r} names {field!r}, which is not an argument of the task"
                )
        named.append(_named(limit, task_id) if limit.name is None else limit)
    return tuple(named)


def _named(limit: Limit, task_id: str) -> Limit:
    """`limit` named after the task that declares it (its instances share it)."""
    name = task_id if len(task_id) <= MAX_KEY else task_id[:MAX_KEY]
    if isinstance(limit, Concurrency):
        return Concurrency(limit.limit, key=limit.key, name=name)
    return RateLimit(limit.count, per=limit.per, key=limit.key, name=name)


def check_priority(option: str, value: Any) -> int:
    """A priority: a whole number 0-9 (ValueError naming `option`)."""
    priority = whole(option, value, minimum=0)
    if priority > 9:
        raise ValueError(f"{option} must be between 0 and 9, got {value!r}")
    return priority


def fixed_wants(task_id: str, limits: Sequence[Limit]) -> tuple[Want, ...] | None:
    """What every attempt asks of `limits` when none has a key (made once, when the task
    is declared); None when it depends on the attempt's arguments."""
    return wants(task_id, limits, {}) if limits and all(limit.key is None for limit in limits) else None


def wants(task_id: str, limits: Sequence[Limit], kwargs: Mapping[str, Any]) -> tuple[Want, ...]:
    """What an attempt of task `task_id` with arguments `kwargs` asks of `limits`;
    `LimitKeyError` naming the field when a key cannot be formatted."""
    out = []
    for limit in limits:
        ident = name = limit.name or task_id
        if limit.key is not None:
            ident = f"{ident}:{_formatted(task_id, limit.key, kwargs)}"
        if len(ident) > MAX_KEY:
            ident = f"{ident[:40]}~{hashlib.sha256(ident.encode()).hexdigest()[:32]}"
        if isinstance(limit, Concurrency):
            out.append(Want(CONCURRENCY, ident, limit.limit, 0.0, name))
        else:
            out.append(Want(RATE, ident, limit.count, limit.per, name))
    return tuple(out)


def _formatted(task_id: str, key: str, kwargs: Mapping[str, Any]) -> str:
    for field in fields(key):
        if field not in kwargs:
            raise LimitKeyError(task_id, key, field, f"argument {field!r} has no value")
    try:
        return key.format_map(kwargs)
    except (LookupError, AttributeError, ValueError, TypeError) as exc:
        field = next((f for f in fields(key) if f in str(exc)), fields(key)[0])
        raise LimitKeyError(
            task_id, key, field, f"cannot format field {field!r} ({type(exc).__name__}: {exc})"
        ) from None
