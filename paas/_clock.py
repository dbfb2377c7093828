"""Time sources, injected so that tests can control them."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for deadlines and timeouts."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch; for records that outlive the process."""


class SystemClock:
    """The real clocks of the ``time`` module."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to, for tests of time-driven logic."""

    def __init__(self, start_s: float = 1_000_000.0) -> None:
        self._now_s = start_s

    def monotonic(self) -> float:
        return self._now_s

    def time(self) -> float:
        return self._now_s

    def advance(self, delta_s: float) -> None:
        if delta_s < 0:
            raise ValueError(f"delta_s must be >= 0, got {delta_s}")
        self._now_s += delta_s
