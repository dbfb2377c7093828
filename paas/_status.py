"""``paas status``: a read-only look at a state dir, safe while a service runs."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from paas._lifecycle import TaskStatus
from paas._sqlite_store import SQLiteTaskStore
from paas._store import TaskRecord

_FAILURES_SHOWN = 5


def render_status(state_dir: str | Path) -> str:
    """Counts by backend and status, then the most recent failures, as text."""
    store = SQLiteTaskStore(Path(state_dir) / "tasks.db", read_only=True)
    try:
        counts = store.counts()
        failures = store.query(
            status=TaskStatus.PERMANENT_FAILURE, limit=_FAILURES_SHOWN
        )
        retrying = store.query(
            status=TaskStatus.TRANSIENT_FAILURE, limit=_FAILURES_SHOWN
        )
    finally:
        store.close()
    return "\n".join(
        [
            *_count_table(counts),
            "",
            *_failure_lines("Last permanent failures", failures),
            *_failure_lines("Waiting to retry", retrying),
        ]
    )


def _count_table(counts: dict[tuple[str, TaskStatus], int]) -> list[str]:
    by_backend: dict[str, dict[TaskStatus, int]] = defaultdict(dict)
    for (backend, status), count in counts.items():
        by_backend[backend][status] = count
    statuses = list(TaskStatus)
    header = ["backend", *(s.name.lower() for s in statuses), "total"]
    rows = [header]
    for backend in sorted(by_backend):
        row = [by_backend[backend].get(s, 0) for s in statuses]
        rows.append([backend, *map(str, row), str(sum(row))])
    totals = [sum(by_backend[b].get(s, 0) for b in by_backend) for s in statuses]
    rows.append(["all", *map(str, totals), str(sum(totals))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return [" ".join(_cells(row, widths)) for row in rows]


def _cells(row: list[str], widths: list[int]) -> list[str]:
    """Backend names flush left, numbers flush right."""
    first, *rest = row
    return [
        first.ljust(widths[0]),
        *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)),
    ]


def _failure_lines(title: str, records: list[TaskRecord]) -> list[str]:
    if not records:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for record in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.updated_at))
        lines.append(
            f"  {when}  {record.task_id}  {record.program_key}/{record.backend}  "
            f"attempts={record.attempts}  {record.last_error_type}: "
            f"{(record.last_error_message or '')[:120]}"
        )
    return lines
