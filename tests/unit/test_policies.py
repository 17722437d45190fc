"""Retry and group policies as pure decisions: no event loop anywhere in this file."""

from __future__ import annotations

import dataclasses

import pytest

from graflow_async import (
    AtLeastNGroupPolicy,
    BestEffortGroupPolicy,
    CoordinationBackend,
    CriticalGroupPolicy,
    GroupExecutionPolicy,
    ParallelGroupError,
    RetryPolicy,
    StrictGroupPolicy,
    TaskResult,
)
from graflow_async.define.policies import resolve_group_policy, retry_delay

# --- RetryPolicy ------------------------------------------------------------------


def test_retry_policy_defaults_match_spec():
    p = RetryPolicy()
    assert (p.max_retries, p.initial_interval, p.backoff_factor, p.max_interval, p.jitter) == (
        0,
        1.0,
        2.0,
        60.0,
        False,
    )


def test_delay_is_initial_times_factor_to_the_retry_index():
    p = RetryPolicy(max_retries=5, initial_interval=0.5, backoff_factor=3.0, max_interval=1000)
    assert [p.delay(n) for n in range(4)] == [0.5, 1.5, 4.5, 13.5]


def test_delay_is_capped_at_max_interval():
    p = RetryPolicy(max_retries=10, initial_interval=1.0, backoff_factor=2.0, max_interval=5.0)
    assert [p.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_huge_retry_index_is_capped_not_overflowing():
    p = RetryPolicy(max_retries=10, initial_interval=1.0, backoff_factor=10.0, max_interval=7.0)
    assert p.delay(10_000) == 7.0


def test_jitter_factor_spans_half_to_one_and_a_half():
    p = RetryPolicy(max_retries=3, initial_interval=2.0, backoff_factor=2.0, max_interval=100, jitter=True)
    assert p.delay(0, rand=lambda: 0.0) == pytest.approx(1.0)
    assert p.delay(0, rand=lambda: 1.0) == pytest.approx(3.0)
    assert p.delay(0, rand=lambda: 0.999) == pytest.approx(2.0 * 1.499)
    assert p.delay(1, rand=lambda: 0.5) == pytest.approx(4.0)


def test_jitter_result_is_capped_again():
    p = RetryPolicy(max_retries=3, initial_interval=8.0, backoff_factor=2.0, max_interval=10.0, jitter=True)
    # base min(8, 10) = 8; 8 * 1.5 = 12 -> capped to 10
    assert p.delay(0, rand=lambda: 1.0) == 10.0
    assert p.delay(0, rand=lambda: 0.999) == 10.0
    assert p.delay(0, rand=lambda: 0.0) == pytest.approx(4.0)
    # base already capped: 10 * 0.5 = 5
    assert p.delay(5, rand=lambda: 0.0) == pytest.approx(5.0)


def test_jitter_off_ignores_rand():
    p = RetryPolicy(max_retries=1, initial_interval=2.0)
    assert p.delay(0, rand=lambda: 0.0) == 2.0
    assert p.delay(0, rand=lambda: 1.0) == 2.0


def test_jitter_with_real_random_stays_in_range():
    p = RetryPolicy(max_retries=1, initial_interval=2.0, max_interval=100, jitter=True)
    for _ in range(200):
        assert 1.0 <= p.delay(0) <= 3.0


def test_retry_delay_gives_delays_until_retries_run_out():
    p = RetryPolicy(max_retries=3, initial_interval=1.0, backoff_factor=2.0)
    assert [retry_delay(p, attempt) for attempt in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, None, None]


def test_retry_delay_none_without_retries():
    assert retry_delay(RetryPolicy(), 1) is None


def test_retry_delay_none_when_not_retryable():
    p = RetryPolicy(max_retries=3)
    assert retry_delay(p, 1, retryable=False) is None
    assert retry_delay(p, 1, retryable=True) == 1.0


def test_retry_delay_passes_rand_through_to_jitter():
    p = RetryPolicy(max_retries=3, initial_interval=4.0, max_interval=100, jitter=True)
    assert retry_delay(p, 1, rand=lambda: 0.0) == pytest.approx(2.0)
    assert retry_delay(p, 2, rand=lambda: 1.0) == pytest.approx(12.0)


@pytest.mark.parametrize(
    "field",
    ["max_retries", "initial_interval", "backoff_factor", "max_interval"],
)
def test_negative_values_raise_value_error_naming_the_field(field):
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: -1})


@pytest.mark.parametrize(
    "field",
    ["max_retries", "initial_interval", "backoff_factor", "max_interval"],
)
@pytest.mark.parametrize("value", ["1", None, [1]])
def test_non_numbers_raise_type_error_naming_the_field(field, value):
    with pytest.raises(TypeError, match=field):
        RetryPolicy(**{field: value})


def test_fractional_max_retries_is_rejected():
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=1.5)


def test_zero_values_are_valid():
    p = RetryPolicy(max_retries=0, initial_interval=0, backoff_factor=0, max_interval=0)
    assert p.delay(0) == 0


def test_retry_policy_is_frozen_and_hashable():
    p = RetryPolicy(max_retries=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_retries = 5  # type: ignore[misc]
    assert p.max_retries == 2
    assert p == RetryPolicy(max_retries=2)
    assert hash(p) == hash(RetryPolicy(max_retries=2))


# --- group policies --------------------------------------------------------------

E1 = ValueError("e1")
E2 = KeyError("e2")


def results(**members: object) -> dict[str, TaskResult]:
    """ok members: value; failing members: an exception instance."""
    out = {}
    for tid, v in members.items():
        if isinstance(v, BaseException):
            out[tid] = TaskResult(tid, False, None, v, 0.1)
        else:
            out[tid] = TaskResult(tid, True, v, None, 0.1)
    return out


def test_task_result_fields():
    r = TaskResult("a", True, 42, None, 1.5)
    assert (r.task_id, r.success, r.value, r.error, r.duration) == ("a", True, 42, None, 1.5)


def test_strict_passes_when_every_member_succeeds():
    assert StrictGroupPolicy().on_group_finished("g", results(a=1, b=2)) is None


def test_strict_fails_naming_failures_in_member_order():
    with pytest.raises(ParallelGroupError) as info:
        StrictGroupPolicy().on_group_finished("g1", results(a=E1, b=3, c=E2))
    err = info.value
    assert err.group_id == "g1"
    assert err.failed_tasks == [("a", E1), ("c", E2)]
    assert err.failed_tasks[0][1] is E1 and err.failed_tasks[1][1] is E2
    assert err.successful_tasks == ["b"]
    assert "g1" in str(err)


def test_best_effort_never_fails():
    BestEffortGroupPolicy().on_group_finished("g", results(a=E1, b=E2))
    BestEffortGroupPolicy().on_group_finished("g", results(a=1))


def test_at_least_n_passes_with_enough_successes():
    AtLeastNGroupPolicy(min_success=2).on_group_finished("g", results(a=1, b=E1, c=3))


def test_at_least_n_fails_with_too_few():
    with pytest.raises(ParallelGroupError) as info:
        AtLeastNGroupPolicy(min_success=2).on_group_finished("g", results(a=E1, b=2, c=E2))
    assert info.value.group_id == "g"
    assert info.value.failed_tasks == [("a", E1), ("c", E2)]
    assert info.value.successful_tasks == ["b"]


def test_at_least_zero_always_passes():
    AtLeastNGroupPolicy(min_success=0).on_group_finished("g", results(a=E1))


def test_at_least_n_rejects_negative():
    with pytest.raises(ValueError, match="min_success"):
        AtLeastNGroupPolicy(min_success=-1)


def test_at_least_n_validate_rejects_more_than_members():
    policy = AtLeastNGroupPolicy(min_success=3)
    policy.validate(["a", "b", "c"])
    with pytest.raises(ValueError, match="min_success"):
        policy.validate(["a", "b"])


def test_critical_ignores_non_critical_failures():
    CriticalGroupPolicy(critical_task_ids=["a"]).on_group_finished("g", results(a=1, b=E1))


def test_critical_fails_when_a_critical_member_fails():
    with pytest.raises(ParallelGroupError) as info:
        CriticalGroupPolicy(critical_task_ids=["b"]).on_group_finished("g", results(a=E2, b=E1, c=1))
    assert info.value.group_id == "g"
    assert info.value.failed_tasks == [("a", E2), ("b", E1)]
    assert info.value.successful_tasks == ["c"]


def test_critical_validate_names_unknown_id():
    policy = CriticalGroupPolicy(critical_task_ids=["a", "zzz"])
    with pytest.raises(ValueError, match="zzz"):
        policy.validate(["a", "b"])


def test_custom_policy_is_a_group_execution_policy():
    class Majority(GroupExecutionPolicy):
        def on_group_finished(self, group_id, results):
            if sum(r.success for r in results.values()) * 2 <= len(results):
                raise ParallelGroupError(group_id, [], [])

    Majority().on_group_finished("g", results(a=1, b=1, c=E1))
    with pytest.raises(ParallelGroupError):
        Majority().on_group_finished("g", results(a=1, b=E1))


def test_resolve_group_policy_names():
    assert type(resolve_group_policy("strict")) is StrictGroupPolicy
    assert type(resolve_group_policy("best_effort")) is BestEffortGroupPolicy
    assert type(resolve_group_policy(None)) is StrictGroupPolicy
    policy = AtLeastNGroupPolicy(min_success=1)
    assert resolve_group_policy(policy) is policy


def test_resolve_group_policy_unknown_name_is_value_error_naming_it():
    with pytest.raises(ValueError, match="fastest"):
        resolve_group_policy("fastest")


def test_resolve_group_policy_rejects_other_types():
    with pytest.raises(TypeError):
        resolve_group_policy(42)  # type: ignore[arg-type]


# --- CoordinationBackend ------------------------------------------------------------


def test_coordination_backend_members():
    assert CoordinationBackend.LOCAL.name == "LOCAL"
    assert CoordinationBackend.REDIS.name == "REDIS"
    assert CoordinationBackend.REDIS is not CoordinationBackend.LOCAL


def test_threading_is_an_alias_of_local():
    assert CoordinationBackend.THREADING is CoordinationBackend.LOCAL
    assert CoordinationBackend["THREADING"] is CoordinationBackend.LOCAL


def test_backend_names_resolve():
    assert CoordinationBackend.resolve(None) is CoordinationBackend.LOCAL
    assert CoordinationBackend.resolve("threading") is CoordinationBackend.LOCAL
    assert CoordinationBackend.resolve("local") is CoordinationBackend.LOCAL
    assert CoordinationBackend.resolve("redis") is CoordinationBackend.REDIS
    with pytest.raises(ValueError, match="carrier-pigeon"):
        CoordinationBackend.resolve("carrier-pigeon")
