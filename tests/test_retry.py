from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import FixedRng, retry_policies, unit_draws

import paas
from paas._retry import should_retry


@given(retry_policies(), st.integers(min_value=0, max_value=10**6))
def test_delay_never_exceeds_cap_even_for_huge_retry_counts(
    policy: paas.RetryPolicy, retry_count: int
) -> None:
    delay_s = paas.backoff_delay_s(policy, retry_count, FixedRng(0.0))
    assert 0 <= delay_s <= policy.max_delay_s
    assert math.isfinite(delay_s)


@given(retry_policies(), st.integers(min_value=0, max_value=60))
def test_delay_without_jitter_follows_the_formula(
    policy: paas.RetryPolicy, retry_count: int
) -> None:
    delay_s = paas.backoff_delay_s(policy, retry_count, FixedRng(0.0))
    try:
        expected = min(
            policy.max_delay_s, policy.base_delay_s * policy.multiplier**retry_count
        )
    except OverflowError:
        expected = policy.max_delay_s
    assert delay_s == pytest.approx(expected, rel=1e-9)


@given(retry_policies(), st.integers(min_value=0, max_value=60))
def test_delay_is_monotonic_in_retry_count(
    policy: paas.RetryPolicy, retry_count: int
) -> None:
    rng = FixedRng(0.0)
    assert paas.backoff_delay_s(policy, retry_count, rng) <= paas.backoff_delay_s(
        policy, retry_count + 1, rng
    ) * (1 + 1e-12)


@given(retry_policies(), st.integers(min_value=0, max_value=200), unit_draws)
def test_jitter_only_shortens_within_its_fraction(
    policy: paas.RetryPolicy, retry_count: int, draw: float
) -> None:
    plain = paas.backoff_delay_s(policy, retry_count, FixedRng(0.0))
    jittered = paas.backoff_delay_s(policy, retry_count, FixedRng(draw))
    assert plain * (1 - policy.jitter) - 1e-9 <= jittered <= plain <= policy.max_delay_s


@given(st.integers(min_value=0, max_value=50))
def test_retry_budget_allows_exactly_max_retries(max_retries: int) -> None:
    policy = paas.RetryPolicy(max_retries=max_retries)
    runs = 1
    while should_retry(policy, runs - 1):
        runs += 1
    assert runs == max_retries + 1


def test_first_retries_of_a_default_policy() -> None:
    policy = paas.RetryPolicy(base_delay_s=0.5, multiplier=2, max_delay_s=3)
    delays = [paas.backoff_delay_s(policy, n) for n in range(5)]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0], rel=1e-12)


def test_negative_retry_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="retry_count must be >= 0, got -1"):
        paas.backoff_delay_s(paas.RetryPolicy(), -1)
