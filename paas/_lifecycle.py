"""Task lifecycle: the statuses, the one table of allowed transitions, the checker.

    PENDING --> QUEUED --> PROVING --> COMPLETED
     |  ^                    |  \\
     |  |                    |   +--> TRANSIENT_FAILURE --(backoff)--> QUEUED
     |  |                    +------> PERMANENT_FAILURE
     |  +-- BLOCKED <--+   (input not ready yet; fetched again after a pause)
     +-----------------+
     +--> PERMANENT_FAILURE   (input rejected, unencodable, or never ready)
     PENDING/QUEUED/PROVING --> COMPLETED  (recovery found the proof stored already)

Every status change in paas goes through :func:`check_transition`; stores apply it
as a compare-and-set on the status they expect, so a stale writer fails loudly
instead of overwriting a newer state.
"""

from __future__ import annotations

import enum

from paas._errors import IllegalTransition


class TaskStatus(enum.Enum):
    """Where a task is in its life. Terminal: COMPLETED, PERMANENT_FAILURE."""

    PENDING = "pending"
    QUEUED = "queued"
    PROVING = "proving"
    COMPLETED = "completed"
    TRANSIENT_FAILURE = "transient_failure"
    PERMANENT_FAILURE = "permanent_failure"
    BLOCKED = "blocked"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.name


_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.PERMANENT_FAILURE})

ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {
            TaskStatus.QUEUED,
            TaskStatus.BLOCKED,
            TaskStatus.COMPLETED,
            TaskStatus.PERMANENT_FAILURE,
        }
    ),
    TaskStatus.BLOCKED: frozenset({TaskStatus.PENDING, TaskStatus.PERMANENT_FAILURE}),
    TaskStatus.QUEUED: frozenset(
        {TaskStatus.PROVING, TaskStatus.COMPLETED, TaskStatus.PERMANENT_FAILURE}
    ),
    TaskStatus.PROVING: frozenset(
        {
            TaskStatus.COMPLETED,
            TaskStatus.TRANSIENT_FAILURE,
            TaskStatus.PERMANENT_FAILURE,
        }
    ),
    TaskStatus.TRANSIENT_FAILURE: frozenset({TaskStatus.QUEUED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.PERMANENT_FAILURE: frozenset(),
}


def check_transition(task_id: str, current: TaskStatus, new: TaskStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in the table."""
    if new not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(task_id, current, new)
