"""Task store: where task records live, behind a small interface.

The supervisor thread is the main writer; handle threads create tasks and read.
Every status change is one call to :meth:`TaskStore.transition`, a compare-and-set
on the status the caller expects, checked against the lifecycle table, that
writes the status and its companion fields together. A durable store implements
the same interface.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Protocol

import msgspec

from paas._errors import IllegalTransition, TaskNotFound
from paas._lifecycle import TaskStatus, check_transition


class TaskRecord(msgspec.Struct, kw_only=True):
    """One task as the store knows it. Times are wall-clock seconds (``time.time``)."""

    task_id: str
    program_key: str
    backend: str
    status: TaskStatus = TaskStatus.PENDING
    created_at: float
    updated_at: float
    attempts: int = 0
    retries: int = 0
    current_attempt: int | None = None
    retry_after: float | None = None
    last_error_type: str | None = None
    last_error_message: str | None = None
    last_error_detail: str | None = None
    prove_time_s: float | None = None
    proof_size: int | None = None
    input: msgspec.Raw | None = None


_MUTABLE_FIELDS = frozenset(TaskRecord.__struct_fields__) - {
    "task_id",
    "program_key",
    "backend",
    "status",
    "created_at",
}


class TaskStore(Protocol):
    """What the service needs from a store of task records."""

    def create(self, record: TaskRecord) -> tuple[TaskRecord, bool]:
        """Insert ``record``, or find the stored task with its id; True if inserted."""

    def get(self, task_id: str) -> TaskRecord:
        """A snapshot of the task; :class:`TaskNotFound` if there is none."""

    def transition(
        self, task_id: str, expected: TaskStatus, new: TaskStatus, **changes: Any
    ) -> TaskRecord:
        """Move ``expected -> new`` and apply ``changes`` atomically, or raise."""

    def counts(self) -> dict[TaskStatus, int]:
        """Number of tasks in each status."""

    def records(self) -> list[TaskRecord]:
        """Snapshots of every task."""


class InMemoryTaskStore:
    """A thread-safe store in a dict: fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, TaskRecord] = {}

    def create(self, record: TaskRecord) -> tuple[TaskRecord, bool]:
        with self._lock:
            existing = self._records.get(record.task_id)
            if existing is not None:
                return msgspec.structs.replace(existing), False
            self._records[record.task_id] = record
            return msgspec.structs.replace(record), True

    def get(self, task_id: str) -> TaskRecord:
        with self._lock:
            record = self._records.get(task_id)
            if record is None:
                raise TaskNotFound(f"no task with id {task_id!r}")
            return msgspec.structs.replace(record)

    def transition(
        self, task_id: str, expected: TaskStatus, new: TaskStatus, **changes: Any
    ) -> TaskRecord:
        unknown = set(changes) - _MUTABLE_FIELDS
        if unknown:
            raise TypeError(f"transition cannot change fields {sorted(unknown)}")
        with self._lock:
            record = self._records.get(task_id)
            if record is None:
                raise TaskNotFound(f"no task with id {task_id!r}")
            if record.status is not expected:
                raise IllegalTransition(task_id, record.status, new)
            check_transition(task_id, expected, new)
            record.status = new
            for name, value in changes.items():
                setattr(record, name, value)
            return msgspec.structs.replace(record)

    def counts(self) -> dict[TaskStatus, int]:
        with self._lock:
            tally = Counter(record.status for record in self._records.values())
        return {status: tally.get(status, 0) for status in TaskStatus}

    def records(self) -> list[TaskRecord]:
        with self._lock:
            return [msgspec.structs.replace(r) for r in self._records.values()]
