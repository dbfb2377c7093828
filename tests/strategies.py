"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

import paas

statuses = st.sampled_from(list(paas.TaskStatus))

finite_delays = st.floats(
    min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False
)


@st.composite
def retry_policies(draw: st.DrawFn) -> paas.RetryPolicy:
    base_delay_s = draw(finite_delays)
    max_delay_s = draw(
        st.floats(
            min_value=base_delay_s, max_value=1e9, allow_nan=False, allow_infinity=False
        )
    )
    return paas.RetryPolicy(
        max_retries=draw(st.integers(min_value=0, max_value=20)),
        base_delay_s=base_delay_s,
        multiplier=draw(st.floats(min_value=1, max_value=1e3, allow_nan=False)),
        max_delay_s=max_delay_s,
        jitter=draw(st.floats(min_value=0, max_value=1)),
    )


class FixedRng:
    """An RNG that always draws the same value, for exact jitter bounds."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


unit_draws = st.floats(min_value=0, max_value=1, exclude_max=True)
