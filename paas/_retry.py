"""Retry schedule: how long a transiently failed task waits before it is requeued."""

from __future__ import annotations

import math
import random
from typing import Protocol

from paas._config import RetryPolicy


class Rng(Protocol):
    def random(self) -> float: ...


def backoff_delay_s(
    policy: RetryPolicy, retry_count: int, rng: Rng | None = None
) -> float:
    """Delay before retry number ``retry_count`` (0 for the first retry).

    Computed in log space so that a huge ``retry_count`` saturates at the cap
    instead of overflowing a float.
    """
    if retry_count < 0:
        raise ValueError(f"retry_count must be >= 0, got {retry_count}")
    base, cap = policy.base_delay_s, policy.max_delay_s
    if base == 0:
        delay = 0.0
    elif policy.multiplier == 1:
        delay = base
    else:
        # log(base) + n * log(multiplier) never overflows, even where base is tiny
        # and cap / base or multiplier ** n would.
        log_delay = math.log(base) + retry_count * math.log(policy.multiplier)
        delay = cap if log_delay >= math.log(cap) else min(cap, math.exp(log_delay))

    if policy.jitter:
        draw = (rng or random).random()
        delay -= delay * policy.jitter * draw
    return delay


def should_retry(policy: RetryPolicy, retries_so_far: int) -> bool:
    """True while the task still has retry budget left."""
    return retries_so_far < policy.max_retries
