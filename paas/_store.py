"""Task store: where task records live, behind a small interface.

The supervisor thread is the main writer; handle threads create tasks and read.
Every status change is one call to :meth:`TaskStore.transition`, a compare-and-set
on the status the caller expects, checked against the lifecycle table, that
writes the status and its companion fields together. A durable store implements
the same interface.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
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
    blocked_checks: int = 0
    deadline_s: float | None = None
    prove_time_s: float | None = None
    proof_size: int | None = None
    proof_sha256: str | None = None
    input: msgspec.Raw | None = None
    program: msgspec.Raw | None = None


_MUTABLE_FIELDS = frozenset(TaskRecord.__struct_fields__) - {
    "task_id",
    "program_key",
    "backend",
    "status",
    "created_at",
}


class TaskStore(Protocol):
    """What the service needs from a store of task records.

    Implementations are thread-safe. ``transition`` is the only way to change a
    task's status: it checks the expected current status (compare-and-set) and
    the lifecycle table, then writes the status and ``changes`` atomically.
    """

    def create(self, record: TaskRecord) -> tuple[TaskRecord, bool]:
        """Insert ``record``, or find the stored task with its id; True if inserted."""

    def get(self, task_id: str) -> TaskRecord:
        """A snapshot of the task; :class:`TaskNotFound` if there is none."""

    def transition(
        self, task_id: str, expected: TaskStatus, new: TaskStatus, **changes: Any
    ) -> TaskRecord:
        """Move ``expected -> new`` and apply ``changes`` atomically, or raise."""

    def counts(self) -> dict[tuple[str, TaskStatus], int]:
        """Number of tasks per (backend, status); absent pairs are zero."""

    def query(
        self,
        *,
        status: TaskStatus | None = None,
        program: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """Snapshots of matching tasks, most recently updated first."""

    def unfinished(self) -> list[TaskRecord]:
        """Every task not in a terminal status, oldest first (for recovery)."""

    def prune(self, finished_before: float) -> int:
        """Delete terminal tasks last updated before this wall time; return how many."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Group the writes inside the block into one transaction where supported."""

    def close(self) -> None:
        """Release the store's resources; later calls raise."""


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
            self._records[record.task_id] = msgspec.structs.replace(record)
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

    def counts(self) -> dict[tuple[str, TaskStatus], int]:
        with self._lock:
            return dict(Counter((r.backend, r.status) for r in self._records.values()))

    def query(
        self,
        *,
        status: TaskStatus | None = None,
        program: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        with self._lock:
            found = [
                r
                for r in self._records.values()
                if (status is None or r.status is status)
                and (program is None or r.program_key == program)
                and (backend is None or r.backend == backend)
            ]
        found.sort(key=lambda r: r.updated_at, reverse=True)
        return [msgspec.structs.replace(r) for r in found[:limit]]

    def unfinished(self) -> list[TaskRecord]:
        with self._lock:
            found = [r for r in self._records.values() if not r.status.is_terminal]
        found.sort(key=lambda r: r.created_at)
        return [msgspec.structs.replace(r) for r in found]

    def prune(self, finished_before: float) -> int:
        with self._lock:
            doomed = [
                task_id
                for task_id, r in self._records.items()
                if r.status.is_terminal and r.updated_at < finished_before
            ]
            for task_id in doomed:
                del self._records[task_id]
        return len(doomed)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        yield  # every write is already atomic and immediate in memory

    def close(self) -> None:
        """Nothing to release; records stay readable until the store is dropped."""
