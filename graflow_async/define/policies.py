"""Retry and parallel-group policies, as pure decisions.

Nothing here touches the event loop: the run plan asks `retry_delay(...)`
whether and when to retry a failed attempt, and `GroupExecutionPolicy.on_group_finished`
whether a finished group failed; then the run actor carries the answer out. Tests call these
directly with facts, no loop needed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graflow_async.exceptions import ParallelGroupError
from graflow_async.options import number, whole


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a failing task.

    Delay before retry ``n`` (0-based) = ``min(initial_interval * backoff_factor**n,
    max_interval)``; with `jitter`, multiplied by a uniform factor in [0.5, 1.5] and
    capped at `max_interval` again.
    """

    max_retries: int = 0
    initial_interval: float = 1.0
    backoff_factor: float = 2.0
    max_interval: float = 60.0
    jitter: bool = False

    def __post_init__(self) -> None:
        for name in ("max_retries", "initial_interval", "backoff_factor", "max_interval"):
            number(f"RetryPolicy.{name}", getattr(self, name))  # finite and >= 0
        whole("RetryPolicy.max_retries", self.max_retries)

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry `retry` (0-based)."""
        try:
            base = self.initial_interval * self.backoff_factor**retry
        except OverflowError:
            base = self.max_interval
        delay = min(base, self.max_interval)
        if self.jitter:
            delay = min(delay * (0.5 + rand()), self.max_interval)
        return delay


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retryable: bool = True,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Decide after failed attempt `attempt` (1-based): the delay before the next
    attempt, or None when the task has no retries left (or the failure is not retryable)."""
    if not retryable or attempt > policy.max_retries:
        return None
    return policy.delay(attempt - 1, rand)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What one member of a parallel group came to, as a group policy sees it."""

    task_id: str
    success: bool
    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0


class GroupExecutionPolicy:
    """Decides whether a finished parallel group failed.

    Subclass and implement `on_group_finished`; raise `ParallelGroupError` to fail the
    group, return to let it succeed. It is called once, when every member has finished
    (after its retries), with the results keyed by member id in member order.
    """

    name = "custom"

    def on_group_finished(self, group_id: str, results: dict[str, TaskResult]) -> None:
        raise NotImplementedError

    def validate(self, member_ids: Iterable[str]) -> None:
        """Check the policy fits the group's members; raise ValueError if not."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def group_error(group_id: str, results: Mapping[str, TaskResult], reason: str = "") -> ParallelGroupError:
    """The `ParallelGroupError` describing `results`, failures in member order."""
    failed = [(r.task_id, r.error) for r in results.values() if not r.success]
    ok = [r.task_id for r in results.values() if r.success]
    error = ParallelGroupError(group_id, [(t, e) for t, e in failed if e is not None], ok)
    if reason:
        error.args = (f"{error.args[0]} ({reason})",)
    return error


class StrictGroupPolicy(GroupExecutionPolicy):
    """Every member must succeed (the default)."""

    name = "strict"

    def on_group_finished(self, group_id: str, results: dict[str, TaskResult]) -> None:
        if not all(r.success for r in results.values()):
            raise group_error(group_id, results, "strict: every member must succeed")


class BestEffortGroupPolicy(GroupExecutionPolicy):
    """The group always succeeds; successors see the members that did."""

    name = "best_effort"

    def on_group_finished(self, group_id: str, results: dict[str, TaskResult]) -> None:
        return None


class AtLeastNGroupPolicy(GroupExecutionPolicy):
    """At least `min_success` members must succeed."""

    name = "at_least_n"

    def __init__(self, min_success: int) -> None:
        if isinstance(min_success, bool) or not isinstance(min_success, int):
            raise TypeError(f"min_success must be an int, got {min_success!r}")
        if min_success < 0:
            raise ValueError(f"min_success must be >= 0, got {min_success}")
        self.min_success = min_success

    def validate(self, member_ids: Iterable[str]) -> None:
        count = len(list(member_ids))
        if self.min_success > count:
            raise ValueError(f"min_success={self.min_success} is more than the group's {count} members")

    def on_group_finished(self, group_id: str, results: dict[str, TaskResult]) -> None:
        successes = sum(1 for r in results.values() if r.success)
        if successes < self.min_success:
            raise group_error(group_id, results, f"at least {self.min_success} needed, {successes} succeeded")

    def __repr__(self) -> str:
        return f"AtLeastNGroupPolicy(min_success={self.min_success})"


class CriticalGroupPolicy(GroupExecutionPolicy):
    """Fails only if one of `critical_task_ids` fails."""

    name = "critical"

    def __init__(self, critical_task_ids: Iterable[str]) -> None:
        if isinstance(critical_task_ids, str):
            raise TypeError("critical_task_ids must be a list of task ids, not a string")
        self.critical_task_ids = list(critical_task_ids)
        if not self.critical_task_ids:
            raise ValueError("critical_task_ids must name at least one task")

    def validate(self, member_ids: Iterable[str]) -> None:
        known = set(member_ids)
        unknown = [t for t in self.critical_task_ids if t not in known]
        if unknown:
            raise ValueError(
                f"critical task id(s) {', '.join(map(repr, unknown))} are not members of the "
                f"group (members: {', '.join(sorted(known))})"
            )

    def on_group_finished(self, group_id: str, results: dict[str, TaskResult]) -> None:
        critical = set(self.critical_task_ids)
        failed = [m for m, r in results.items() if not r.success and (m in critical or r.task_id in critical)]
        if failed:
            raise group_error(group_id, results, f"critical member(s) failed: {', '.join(failed)}")

    def __repr__(self) -> str:
        return f"CriticalGroupPolicy(critical_task_ids={self.critical_task_ids!r})"


_NAMED_POLICIES: dict[str, Callable[[], GroupExecutionPolicy]] = {
    "strict": StrictGroupPolicy,
    "best_effort": BestEffortGroupPolicy,
}


def resolve_group_policy(policy: GroupExecutionPolicy | str | None) -> GroupExecutionPolicy:
    """A policy object from a policy or one of its names ("strict", "best_effort")."""
    if policy is None:
        return StrictGroupPolicy()
    if isinstance(policy, GroupExecutionPolicy):
        return policy
    if isinstance(policy, str):
        try:
            return _NAMED_POLICIES[policy]()
        except KeyError:
            raise ValueError(
                f"unknown group policy {policy!r}; use one of {sorted(_NAMED_POLICIES)} or a GroupExecutionPolicy"
            ) from None
    raise TypeError(f"policy must be a GroupExecutionPolicy or a name, got {policy!r}")


class CoordinationBackend(enum.Enum):
    """Where a parallel group's members run."""

    LOCAL = "local"
    REDIS = "redis"
    # Accepted for code written for Graflow; it means LOCAL here.
    THREADING = "local"

    @classmethod
    def resolve(cls, value: CoordinationBackend | str | None) -> CoordinationBackend:
        if value is None:
            return cls.LOCAL
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                try:
                    return cls(value.lower())
                except ValueError:
                    pass
        raise ValueError(f"unknown coordination backend {value!r}; use LOCAL or REDIS")
