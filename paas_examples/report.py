"""What ``paas demo`` shows: progress bars, batch statistics, the chaos summary.

Batch statistics are one row per backend and a total. They work from task records
(``ServiceHandle.task``) after the batch: prove times and retries come from the
records, wall time runs from submission to the last completion the records show,
so the numbers do not depend on how often the demo polled.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, JustifyMethod
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from paas import TaskRecord, TaskStatus


def progress() -> Progress:
    """Progress bars on stderr, so that stdout carries only plan and results."""
    return Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


@dataclass(frozen=True)
class LaneStats:
    """One row of the table; ``wall_s`` runs from submit to the last proof."""

    name: str
    tasks: int
    completed: int
    verified: int
    failed: int
    retries: int
    prove_times_s: list[float]
    wall_s: float
    workers: int

    @property
    def throughput_per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_efficiency(self) -> float:
        """The share of the workers' wall time spent inside prove().

        Prove times are wall-clock seconds measured in the worker, so a worker
        that waits for a core while proving still counts as busy.
        """
        budget_s = self.wall_s * self.workers
        return sum(self.prove_times_s) / budget_s if budget_s > 0 else 0.0


def lane_stats(
    backend: str,
    records: Sequence[TaskRecord],
    unverified: Collection[str],
    submitted_at: float,
    workers: int,
) -> LaneStats:
    """Statistics of one backend's tasks; ``unverified`` holds task ids."""
    done = [record for record in records if record.status is TaskStatus.COMPLETED]
    # Record times are wall-clock (time.time), hence submitted_at is too.
    last_at = max((record.updated_at for record in done), default=submitted_at)
    return LaneStats(
        name=backend,
        tasks=len(records),
        completed=len(done),
        verified=sum(record.task_id not in unverified for record in done),
        failed=sum(record.status is TaskStatus.PERMANENT_FAILURE for record in records),
        retries=sum(record.retries for record in records),
        prove_times_s=[r.prove_time_s for r in done if r.prove_time_s is not None],
        wall_s=last_at - submitted_at,
        workers=workers,
    )


def total(stats: Sequence[LaneStats]) -> LaneStats:
    # The pools run side by side, so the batch takes as long as the slowest one.
    return LaneStats(
        name="total",
        tasks=sum(s.tasks for s in stats),
        completed=sum(s.completed for s in stats),
        verified=sum(s.verified for s in stats),
        failed=sum(s.failed for s in stats),
        retries=sum(s.retries for s in stats),
        prove_times_s=[t for s in stats for t in s.prove_times_s],
        wall_s=max((s.wall_s for s in stats), default=0.0),
        workers=sum(s.workers for s in stats),
    )


def table(rows: Sequence[LaneStats]) -> Table:
    """The rows, with their total as the footer."""
    # Narrow headers and one-space gaps keep the table within 80 columns.
    result = Table(
        title="paas demo",
        title_justify="left",
        caption="wall: submit to last proof; CPU: prove time / (wall x workers)",
        caption_justify="left",
        box=box.SIMPLE,
        padding=0,
        show_footer=True,
    )
    for header, footer in zip(_HEADERS, _cells(total(rows)), strict=True):
        justify: JustifyMethod = "left" if header == "backend" else "right"
        result.add_column(header, footer=footer, justify=justify)
    for row in rows:
        result.add_row(*_cells(row))
    return result


_HEADERS = (
    "backend",
    "tasks",
    "completed",
    "verified",
    "failed",
    "retries",
    "p50 s",
    "p95 s",
    "wall s",
    "tasks/s",
    "CPU",
)


def _cells(row: LaneStats) -> list[str]:
    return [
        row.name,
        str(row.tasks),
        str(row.completed),
        str(row.verified),
        str(row.failed),
        str(row.retries),
        _seconds(percentile(row.prove_times_s, 0.50)),
        _seconds(percentile(row.prove_times_s, 0.95)),
        f"{row.wall_s:.1f}" if row.completed else "-",
        f"{row.throughput_per_s:.2f}",
        f"{row.cpu_efficiency:.0%}",
    ]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _seconds(value_s: float | None) -> str:
    if value_s is None:
        return "-"
    # Five characters below 100 s, so long proofs do not widen the table.
    decimals = 3 if value_s < 10 else 2 if value_s < 100 else 1
    return f"{value_s:.{decimals}f}"


@dataclass(frozen=True)
class ChaosSummary:
    """What a chaos run injected, what paas detected, and what must be zero."""

    tasks: int
    workers_seen: int
    kills: int
    freezes: int
    hangs: int
    crashes: int
    retries: int
    lost: int
    completed_twice: int
    leftover_processes: int
    fd_delta: int

    def must_be_zero(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "completed twice": self.completed_twice,
            "leftover processes": self.leftover_processes,
            "fd delta": self.fd_delta,
        }

    def failed_checks(self) -> list[str]:
        return [name for name, value in self.must_be_zero().items() if value != 0]


def chaos_table(summary: ChaosSummary) -> Table:
    """One row per number; the rows that must be zero say whether they are."""
    result = Table(
        title="chaos summary", title_justify="left", box=box.SIMPLE, padding=0
    )
    result.add_column("", justify="left")
    result.add_column("count", justify="right")
    result.add_column("check", justify="left")
    observed = {
        "tasks": summary.tasks,
        "workers seen": summary.workers_seen,
        "kills injected": summary.kills,
        "freezes injected": summary.freezes,
        "hangs detected": summary.hangs,
        "crashes detected": summary.crashes,
        "retries": summary.retries,
    }
    for name, value in observed.items():
        result.add_row(name, str(value), "")
    for name, value in summary.must_be_zero().items():
        result.add_row(name, str(value), "  ok" if value == 0 else "  [red]FAIL[/]")
    return result
