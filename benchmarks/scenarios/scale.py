"""Scenario 5, scale: 100,000 tasks queued in paas at once.

Every worker is first given a task that blocks, so nothing is dispatched while
the clock runs: the numbers are what a deep queue costs the host, namely the
time for ``submit_task`` to return for every task, the time until every task is
QUEUED (input fetched and encoded, handed to the supervisor), and the memory of
the host process, which holds the supervisor, the task store and the inputs.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import psutil

from benchmarks import _contenders as c
from benchmarks import _tasks
from benchmarks._harness import Plan, Results, Stats, hard_timeout_s, values_of
from benchmarks._report import ChartSpec, Metric, Section, Target, format_values

WORKERS = 2
TARGET_TASKS = 100_000
# Quick runs queue fewer tasks to stay within their time budget; the targets
# are set for TARGET_TASKS and are checked in full runs only.
QUICK_TASKS = 10_000
BLOCK_S = 600.0
SUBMIT_LIMIT_S = 5.0
RSS_LIMIT_MB = 250.0
_POLL_S = 0.05
EXTRA_COLUMNS = (
    ("all QUEUED s", "queued_s"),
    ("host RSS MB", "rss_mb"),
    ("peak RSS MB", "peak_rss_mb"),
    ("RSS growth MB", "growth_mb"),
    ("RSS before launch MB", "baseline_rss_mb"),
)
_BYTES_PER_MB = 1024 * 1024


def plan(quick: bool) -> Plan:
    contenders = c.paas_variants()
    timeout_s = 30.0 if quick else 120.0
    return Plan(
        scenario="scale",
        contenders=contenders,
        params={
            "tasks": QUICK_TASKS if quick else TARGET_TASKS,
            "workers": WORKERS,
            "timeout_s": timeout_s,
        },
        # Two waits of up to timeout_s each: blockers started, then all queued.
        hard_timeout_s=hard_timeout_s(quick, timeout_s, timeout_s),
        headline_key="submit_s",
        headline_unit="s",
    )


def run_trial(
    contender: str, params: dict[str, Any], emit: Callable[[dict[str, Any]], None]
) -> None:
    import paas

    baseline_mb = _rss_mb()
    # A short grace: the blocked workers will not finish, so stop kills them.
    runner = c.PaasRunner(
        sqlite=contender in (c.PAAS_SQLITE, c.PAAS_SQLITE_MANY),
        many=contender in (c.PAAS_MANY, c.PAAS_SQLITE_MANY),
        shutdown_grace_s=0.5,
    )
    runner.start(params["workers"], [_tasks.block, _tasks.noop])
    try:
        handle = runner.handle
        blockers = [runner.submit(_tasks.block, BLOCK_S) for _ in range(WORKERS)]
        _wait_until(
            lambda: all(handle.status(t) is paas.TaskStatus.PROVING for t in blockers),
            params["timeout_s"],
            "the blocking tasks never started",
        )
        emit(_queue_deep(runner, params["tasks"], params["timeout_s"], baseline_mb))
    finally:
        runner.stop(hard=True)


def _queue_deep(
    runner: c.PaasRunner, tasks: int, timeout_s: float, baseline_mb: float
) -> dict[str, Any]:
    import paas

    handle = runner.handle
    calls = [c.Call(c.paas_key(_tasks.noop), index) for index in range(tasks)]
    launched_mb = _rss_mb()
    dispatched_before = handle.metrics()["dispatched"]

    started_s = time.perf_counter()
    task_ids = runner.submit_calls(calls)
    submit_s = time.perf_counter() - started_s
    _wait_until(
        lambda: handle.status(task_ids[-1]) is paas.TaskStatus.QUEUED,
        timeout_s,
        "the last task never became QUEUED",
    )
    _wait_until(
        lambda: _count_queued(handle, paas.TaskStatus.QUEUED) >= tasks,
        timeout_s,
        "not every task became QUEUED",
    )
    queued_s = time.perf_counter() - started_s

    rss_mb = _rss_mb()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "submit_s": submit_s,
        "queued_s": queued_s,
        "rss_mb": rss_mb,
        "peak_rss_mb": max(rss_mb, peak_kib / 1024),
        "baseline_rss_mb": baseline_mb,
        "growth_mb": rss_mb - launched_mb,
        "dispatched_meanwhile": handle.metrics()["dispatched"] - dispatched_before,
    }


def _rss_mb() -> float:
    rss_bytes: int = psutil.Process().memory_info().rss
    return rss_bytes / _BYTES_PER_MB


def _count_queued(handle: Any, queued: Any) -> int:
    # counts() keys are statuses, or (backend, status) pairs in newer paas builds.
    return sum(
        count
        for key, count in handle.counts().items()
        if (key[-1] if isinstance(key, tuple) else key) is queued
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float, problem: str) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"{problem} within {timeout_s} s")
        time.sleep(_POLL_S)


def summarize(plan: Plan, results: Results) -> Section:
    tasks = plan.params["tasks"]
    section = Section(
        title=f"Scale: {tasks:,} queued tasks",
        workload=(
            f"{tasks:,} no-op tasks submitted to paas while both workers are busy "
            "on blocking tasks, so all stay queued. Memory is the RSS of the host "
            "process (it runs the supervisor thread), measured by psutil."
        ),
        metric=Metric("submit_s", "submit all s", higher_is_better=False),
        reference=c.PAAS,
        values={name: values_of(runs, "submit_s") for name, runs in results.items()},
    )
    section.extras = {
        column: {
            name: format_values(values_of(runs, key), digits=1)
            for name, runs in results.items()
        }
        for column, key in EXTRA_COLUMNS
    }
    if tasks == TARGET_TASKS:
        section.targets = _targets(section, results, tasks)
    else:
        section.notes.append(
            f"Quick run: {tasks:,} tasks, so the targets (set for "
            f"{TARGET_TASKS:,} tasks) are not checked."
        )
    section.chart = ChartSpec(
        section.metric,
        section.values,
        {name: _peak_label(runs) for name, runs in results.items()},
        limit=SUBMIT_LIMIT_S if tasks == TARGET_TASKS else None,
    )
    section.notes += [
        "Submit all: every submit_task call returned. All QUEUED: every input "
        "fetched, encoded and handed to the supervisor, from the same start.",
        "Peak RSS is the process's high-water mark (ru_maxrss) since it started.",
    ]
    return section


def _targets(section: Section, results: Results, tasks: int) -> list[Target]:
    targets = []
    for name, runs in results.items():
        submit = section.stats(name)
        peak = Stats.of(values_of(runs, "peak_rss_mb"))
        targets += [
            Target(
                f"scale: {name}, submit {tasks:,} tasks",
                None if submit is None else submit.median,
                SUBMIT_LIMIT_S,
                " s",
                at_least=False,
            ),
            Target(
                f"scale: {name}, peak host RSS",
                None if peak is None else peak.median,
                RSS_LIMIT_MB,
                " MB",
                at_least=False,
            ),
        ]
    return targets


def _peak_label(runs: list[dict[str, Any]]) -> str:
    peak = Stats.of(values_of(runs, "peak_rss_mb"))
    return "" if peak is None else f"peak RSS {peak.median:.0f} MB"
