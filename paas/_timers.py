"""Timers of the supervisor loop: retry back-offs, blocked rechecks, recovery scans.

A heap of (due time, sequence, callback) on the injected clock; the loop asks for
the next due time to size its poll, then runs what is due. ``waiting`` holds the
tasks that have a timer pending, so that a recovery scan leaves them alone.
Used only by the supervisor thread.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator

from paas._clock import Clock


class Timers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.waiting: set[str] = set()

    def schedule(self, delay_s: float, callback: Callable[[], None]) -> None:
        due_s = self._clock.monotonic() + delay_s
        heapq.heappush(self._heap, (due_s, next(self._seq), callback))

    def wait_then(
        self, delay_s: float, task_id: str, then: Callable[[str], None]
    ) -> None:
        """Call ``then(task_id)`` after ``delay_s``; the task waits until then."""
        self.waiting.add(task_id)

        def fire() -> None:
            self.waiting.discard(task_id)
            then(task_id)

        self.schedule(delay_s, fire)

    def next_due_s(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self) -> Iterator[Callable[[], None]]:
        """The callbacks whose time has come, earliest first."""
        now_s = self._clock.monotonic()
        while self._heap and self._heap[0][0] <= now_s:
            yield heapq.heappop(self._heap)[2]
