"""Scenario 3, crash recovery: a worker is SIGKILLed in the middle of a task.

The batch is one victim and a few short naps. The victim writes its pid to a
marker file; a thread of the trial sees the file and SIGKILLs that pid (after
checking it is one of the trial's own descendants). What the pool does next is
the result: every task completes (the lost one was run again), the lost task
raises, every pending task raises (a broken pool), or results stop coming (a
hang, cut short by the trial's deadline). The headline time is from submitting
the batch until every task has a result, which only a pool that runs the lost
task again reaches; the time until the batch settled (every task has a result or
an error, or the deadline passed) is shown next to it.
"""

from __future__ import annotations

import collections
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks import _contenders as c
from benchmarks import _tasks
from benchmarks._harness import (
    Plan,
    Results,
    Stats,
    hard_timeout_s,
    values_of,
    warm_timeout_s,
)
from benchmarks._report import ChartSpec, Metric, Section, format_values

WORKERS = 2
_POLL_S = 0.002


def plan(quick: bool) -> Plan:
    settle_timeout_s = 3.0 if quick else 10.0
    warm_s = warm_timeout_s(quick)
    return Plan(
        scenario="crash",
        contenders=[c.POOL_CS1, c.PPE_SUBMIT, c.LOKY, c.PEBBLE, c.PAAS],
        params={
            "tasks": 8,
            "nap_s": 0.2,
            "workers": WORKERS,
            "settle_timeout_s": settle_timeout_s,
            "warm_timeout_s": warm_s,
        },
        hard_timeout_s=hard_timeout_s(quick, warm_s, settle_timeout_s),
        headline_key="outcome",
        headline_unit="",
    )


class _VictimKiller(threading.Thread):
    """Wait for the victim's marker, then SIGKILL the pid it names."""

    def __init__(self, marker: Path, timeout_s: float) -> None:
        super().__init__(name="victim-killer", daemon=True)
        self._marker = marker
        self._timeout_s = timeout_s
        self.killed_at_s: float | None = None
        self.problem = ""

    def run(self) -> None:
        deadline_s = time.monotonic() + self._timeout_s
        while not self._marker.exists():
            if time.monotonic() > deadline_s:
                self.problem = "the victim never started"
                return
            time.sleep(_POLL_S)
        pid = int(self._marker.read_text())
        ours = {child.pid for child in psutil.Process().children(recursive=True)}
        if pid not in ours:
            self.problem = f"victim pid {pid} is not a descendant; not killed"
            return
        os.kill(pid, signal.SIGKILL)
        self.killed_at_s = time.perf_counter()


def run_trial(
    contender: str, params: dict[str, Any], emit: Callable[[dict[str, Any]], None]
) -> None:
    timeout_s = params["settle_timeout_s"]
    with tempfile.TemporaryDirectory(prefix="paas-bench-crash-") as scratch:
        marker = Path(scratch) / "victim.pid"
        jobs = [[str(marker), 0.0]] + [["", params["nap_s"]]] * (params["tasks"] - 1)
        with c.running(
            contender,
            params["workers"],
            [_tasks.crash_probe],
            params["warm_timeout_s"],
            hard_stop=True,
        ) as runner:
            killer = _VictimKiller(marker, timeout_s)
            killer.start()
            started_s = time.perf_counter()
            outcomes = runner.run(_tasks.crash_probe, jobs, timeout_s)
            settled_s = time.perf_counter()
            killer.join()
            if killer.problem:
                raise RuntimeError(killer.problem)
            assert killer.killed_at_s is not None
            values = _classify(outcomes, timeout_s)
            settle_s = settled_s - started_s
            if values["completed"] == len(jobs):
                values["complete_s"] = settle_s
            values["settle_s"] = settle_s
            values["kill_to_settle_s"] = settled_s - killer.killed_at_s
            emit(values)


def _classify(outcomes: Sequence[c.Outcome], timeout_s: float) -> dict[str, Any]:
    completed = sum(isinstance(o, bytes) for o in outcomes)
    hung = sum(o is c.TIMED_OUT for o in outcomes)
    errors = collections.Counter(
        type(o).__name__ for o in outcomes if isinstance(o, BaseException)
    )
    parts = []
    if errors:
        raised = ", ".join(sorted(errors))
        lost = sum(errors.values())
        parts.append(f"{raised} raised; {lost} of {len(outcomes)} tasks lost")
    if hung:
        parts.append(f"hang: {hung} never finished (gave up at {timeout_s:g} s)")
    if not parts:
        victim = outcomes[0]
        parts.append(
            "requeued and completed"
            if victim == b"requeued"
            else f"completed (victim returned {victim!r})"
        )
    return {"outcome": "; ".join(parts), "completed": completed, "hung": hung}


def summarize(plan: Plan, results: Results) -> Section:
    params = plan.params
    section = Section(
        title="Crash recovery",
        workload=(
            f"A batch of {params['tasks']} tasks on {params['workers']} workers: one "
            f"victim, SIGKILLed once it starts, and {params['tasks'] - 1} naps of "
            f"{params['nap_s']} s. Complete: every task has its result. Settled: "
            "every task has a result or an error, or the trial gave up after "
            f"{params['settle_timeout_s']:g} s."
        ),
        metric=Metric("complete_s", "batch complete s", higher_is_better=False),
        reference=c.PAAS,
        values={name: values_of(runs, "complete_s") for name, runs in results.items()},
        ok_label="batches completed",
    )
    section.extras = _extras(results, params["tasks"])
    section.chart = ChartSpec(
        Metric("settle_s", "settled s, labelled with what happened", False),
        {name: values_of(runs, "settle_s") for name, runs in results.items()},
        {name: _short_outcome(runs) for name, runs in results.items()},
    )
    section.notes = [
        "A batch is complete when all its tasks returned a result; a pool that loses "
        "a task never completes it (—), and a host would have to detect the loss "
        "and resubmit on its own.",
        "paas runs with its default RetryPolicy: the lost task runs again 0.5 s "
        "after the crash, on a restarted worker, while the naps keep the other "
        "worker busy, so the batch ends about when the naps do.",
        "A hang is a pool that keeps waiting for the lost task; the trial gives up "
        "at its deadline and kills the pool.",
    ]
    return section


def _extras(results: Results, tasks: int) -> dict[str, dict[str, str]]:
    return {
        "what happened": {name: _outcome_cell(runs) for name, runs in results.items()},
        "tasks completed": {
            name: _median_cell(values_of(runs, "completed"), tasks)
            for name, runs in results.items()
        },
        "settled s": {
            name: format_values(values_of(runs, "settle_s"))
            for name, runs in results.items()
        },
        "kill -> settled s": {
            name: format_values(values_of(runs, "kill_to_settle_s"))
            for name, runs in results.items()
        },
    }


def _outcome_cell(runs: Sequence[dict[str, Any]]) -> str:
    seen = collections.Counter(run.get("outcome", "trial failed") for run in runs)
    if len(seen) == 1:
        return next(iter(seen))
    return "; ".join(f"{outcome} ({n}x)" for outcome, n in seen.most_common())


def _median_cell(values: list[float | None], total: int) -> str:
    stats = Stats.of(values)
    return "—" if stats is None else f"{stats.median:g} of {total}"


def _short_outcome(runs: Sequence[dict[str, Any]]) -> str:
    """A bar label: what happened in most rounds, in a word or two."""
    outcomes = collections.Counter(run.get("outcome", "") for run in runs)
    outcome = outcomes.most_common(1)[0][0] if outcomes else ""
    if outcome.startswith("requeued"):
        return "requeued"
    if outcome.startswith("hang"):
        return "hang"
    if "raised" in outcome:
        lost = outcome.split("; ")[1].split(" of ")[0]
        return f"{outcome.split()[0]}, {lost} lost"
    return outcome[:20]
