"""Scenario 1, dispatch overhead: many no-op tasks through a warm pool.

The task does nothing, so tasks per second measures what a pool adds per task:
pickling or encoding, the trip to a worker and back, and the bookkeeping. Pools
start and warm up before the clock starts; the clock stops when the last result
is in the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import _contenders as c
from benchmarks import _tasks
from benchmarks._harness import (
    Plan,
    Results,
    hard_timeout_s,
    values_of,
    warm_timeout_s,
)
from benchmarks._report import Metric, Section, Target

WORKERS = 2
# paas (in-memory store) against these contenders, at least this ratio.
TARGETS = ((c.POOL_CS1, 1.0), (c.PPE_SUBMIT, 2.0))
NOTES = (
    "Pool, PPE and pebble use the platform's default start method (fork); loky and "
    "paas spawn. For a warm pool the start method does not matter.",
    "paas: one submit_task per task (one submit_many call for the batch where the "
    "name says so), then one wait per task; in-memory task store unless the name "
    "says otherwise. The targets are for plain paas, as a host first writes it.",
)


def plan(quick: bool) -> Plan:
    contenders = [
        c.POOL_CS1,
        c.POOL_CS100,
        c.PPE_SUBMIT,
        c.PPE_MAP,
        c.LOKY,
        c.PEBBLE,
        *c.paas_variants(),
    ]
    timeout_s = 10.0 if quick else 60.0
    warm_s = warm_timeout_s(quick)
    return Plan(
        scenario="dispatch",
        contenders=contenders,
        params={
            "tasks": 2_000 if quick else 20_000,
            "workers": WORKERS,
            "timeout_s": timeout_s,
            "warm_timeout_s": warm_s,
        },
        hard_timeout_s=hard_timeout_s(quick, warm_s, timeout_s),
        headline_key="tasks_per_s",
        headline_unit="tasks/s",
    )


def run_trial(
    contender: str, params: dict[str, Any], emit: Callable[[dict[str, Any]], None]
) -> None:
    tasks = params["tasks"]
    with c.running(
        contender, params["workers"], [_tasks.noop], params["warm_timeout_s"]
    ) as runner:
        started_s = time.perf_counter()
        outcomes = runner.run(_tasks.noop, range(tasks), params["timeout_s"])
        elapsed_s = time.perf_counter() - started_s
        failed = sum(not isinstance(outcome, bytes) for outcome in outcomes)
        if failed:
            raise RuntimeError(f"{failed} of {tasks} no-op tasks did not succeed")
        emit({"tasks_per_s": tasks / elapsed_s, "elapsed_s": elapsed_s})


def summarize(plan: Plan, results: Results) -> Section:
    tasks = plan.params["tasks"]
    section = Section(
        title="Dispatch overhead",
        workload=(
            f"{tasks:,} no-op tasks, {plan.params['workers']} workers, pools started "
            "and warmed up before timing; submit everything, then collect every "
            "result."
        ),
        metric=Metric("tasks_per_s", "tasks/s", higher_is_better=True, digits=0),
        reference=c.POOL_CS1,
        values={name: values_of(runs, "tasks_per_s") for name, runs in results.items()},
    )
    section.targets = [
        Target(
            f"dispatch: paas vs {reference}",
            section.ratio(c.PAAS, against=reference),
            goal,
            "x",
            at_least=True,
        )
        for reference, goal in TARGETS
    ]
    section.notes = list(NOTES)
    if c.PAAS_SQLITE not in results:
        section.notes.append(
            "paas.SQLiteTaskStore does not exist in this paas build, so those "
            "contenders were skipped."
        )
    return section
