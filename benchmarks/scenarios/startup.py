"""Scenario 4, start-up: from creating the pool to the first result in hand.

Library imports happen before the clock starts (every contender's), so this is
the cost of starting worker processes and of the first round trip. The start
method dominates: fork copies a warm interpreter, spawn starts a fresh one that
imports the task's module. paas and loky always spawn, so the spawn variants of
Pool and PPE are the like-for-like comparison; the reference is Pool with spawn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import _contenders as c
from benchmarks import _tasks
from benchmarks._harness import Plan, Results, hard_timeout_s, values_of
from benchmarks._report import Metric, Section

WORKERS = 2


def plan(quick: bool) -> Plan:
    timeout_s = 10.0 if quick else 60.0
    return Plan(
        scenario="startup",
        contenders=[
            c.POOL_CS1,
            c.POOL_SPAWN,
            c.PPE_SUBMIT,
            c.PPE_SPAWN,
            c.LOKY,
            c.PEBBLE,
            c.PAAS,
        ],
        params={"workers": WORKERS, "timeout_s": timeout_s},
        hard_timeout_s=hard_timeout_s(quick, timeout_s),
        headline_key="first_result_s",
        headline_unit="s",
    )


def run_trial(
    contender: str, params: dict[str, Any], emit: Callable[[dict[str, Any]], None]
) -> None:
    runner = c.make(contender)  # imports the library before the clock starts
    started_s = time.perf_counter()
    runner.start(params["workers"], [_tasks.noop])
    try:
        [outcome] = runner.run(_tasks.noop, [0], params["timeout_s"])
        first_result_s = time.perf_counter() - started_s
        if not isinstance(outcome, bytes):
            raise RuntimeError(f"the first task did not succeed: {outcome!r}")
        emit({"first_result_s": first_result_s})
    finally:
        runner.stop(hard=False)


def summarize(plan: Plan, results: Results) -> Section:
    section = Section(
        title="Start-up",
        workload=(
            f"Create a pool of {plan.params['workers']} workers and run one no-op "
            "task: time from creating the pool to having its result. Library "
            "imports in the host are done before timing."
        ),
        metric=Metric("first_result_s", "launch to first result s", False, digits=3),
        reference=c.POOL_SPAWN,
        values={
            name: values_of(runs, "first_result_s") for name, runs in results.items()
        },
    )
    section.notes = [
        "Names without (spawn) use the platform default, fork; loky uses its own "
        "spawn-based start method; paas spawns through multiprocess (dill)."
    ]
    return section
