"""Counters the service keeps since launch; read a copy with ``metrics()``."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Metrics:
    """Plain counters, written only by the supervisor thread."""

    dispatched: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    recovered: int = 0
    workers_started: int = 0
    workers_retired: int = 0
    workers_crashed: int = 0
    workers_hung: int = 0
    deadlines_exceeded: int = 0
    memory_kills: int = 0
    silent_but_busy: int = 0
    start_failures: int = 0
    frames_dropped: int = 0
    stale_replies: int = 0
    store_errors: int = 0
    store_conflicts: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
