"""The timing harness: trials in fresh processes, interleaved rounds, statistics.

    run_plan(plan, runs)
      round 1: trial(A) trial(B) trial(C)     each trial is one new Python process:
      round 2: trial(B) trial(C) trial(A)     python -m benchmarks._trial ...
      ...                                     -> JSON values in a result file

A fresh process per trial keeps contenders from sharing memory, threads or
leftover workers, gives every trial a hard timeout, and lets a hung pool be
killed without taking the benchmark with it. Rounds rotate the order, so a burst
of load from a neighbour on a shared machine lands on every contender in turn
rather than always on the same one; ratios are then taken within a round.

Each trial runs in a session of its own. Every process of that session is ours,
so whatever outlives the trial (a worker whose pool was never shut down) is
found by session id and killed, and counted, rather than left running.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LEFTOVER_GRACE_S = 1.0
# Room for interpreter start, pool start and pool stop around a trial's own
# deadlines; quick runs allow less so a stuck contender costs less time.
_SLACK_S = {True: 15.0, False: 60.0}
_LEFTOVER_POLL_S = 0.02
_LOG_TAIL_CHARS = 8000
# A stuck trial prints every thread's stack this long before its hard timeout,
# so the log says where it hung.
_STACK_DUMP_LEAD_S = 3.0
SKIPPED = "skipped: hit the hard timeout in an earlier round"
_trial_numbers = itertools.count(1)

# Per contender, one values dict per round, in round order.
Results = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Plan:
    """What one scenario runs: its contenders, its parameters, its limits."""

    scenario: str
    contenders: Sequence[str]
    params: Mapping[str, Any]
    hard_timeout_s: float
    headline_key: str
    headline_unit: str


def warm_timeout_s(quick: bool) -> float:
    """How long a pool may take to show every worker alive before timing starts."""
    return 10.0 if quick else 30.0


def hard_timeout_s(quick: bool, *deadlines_s: float) -> float:
    """A trial's hard limit: its own deadlines in sequence, plus slack."""
    return sum(deadlines_s) + _SLACK_S[quick]


@dataclass(frozen=True)
class Stats:
    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stats | None:
        present = [v for v in values if v is not None]
        if not present:
            return None
        return cls(statistics.median(present), min(present), max(present), len(present))


def values_of(runs: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    """The numeric ``key`` of each round; None where that round failed."""
    return [None if "error" in run else run.get(key) for run in runs]


def run_plan(
    plan: Plan, runs: int, workdir: Path, log: Callable[[str], None]
) -> Results:
    """Run every contender ``runs`` times, rotating the order each round.

    A contender that hit its hard timeout is not run again in this scenario: a
    hang is the finding, and repeating it would only spend the time budget.
    """
    results: Results = {name: [] for name in plan.contenders}
    stuck: set[str] = set()
    count = len(plan.contenders)
    for round_index in range(runs):
        shift = round_index % count
        order = [*plan.contenders[shift:], *plan.contenders[:shift]]
        for contender in order:
            if contender in stuck:
                values = {"error": SKIPPED}
            else:
                values = run_trial(plan, contender, workdir)
            if values.get("hard_timeout"):
                stuck.add(contender)
            results[contender].append(values)
            log(_progress_line(plan, round_index, runs, contender, values))
    return results


def _progress_line(
    plan: Plan, round_index: int, runs: int, contender: str, values: Mapping[str, Any]
) -> str:
    prefix = f"  {plan.scenario:<9} {round_index + 1}/{runs}  {contender:<24}"
    if "error" in values:
        return f"{prefix} FAILED: {str(values['error']).splitlines()[0][:100]}"
    headline = values.get(plan.headline_key)
    shown = f"{headline:,.3f}" if isinstance(headline, float) else str(headline)
    return f"{prefix} {shown} {plan.headline_unit}"


def run_trial(plan: Plan, contender: str, workdir: Path) -> dict[str, Any]:
    """Run one trial in a new session with a hard timeout; return its values."""
    number = next(_trial_numbers)
    result_path = workdir / f"{plan.scenario}-{number}.json"
    log_path = workdir / f"{plan.scenario}-{number}.log"
    command = [
        sys.executable,
        "-m",
        "benchmarks._trial",
        plan.scenario,
        contender,
        json.dumps(dict(plan.params)),
        str(result_path),
        str(max(1.0, plan.hard_timeout_s - _STACK_DUMP_LEAD_S)),
    ]
    started_s = time.monotonic()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = _wait_or_kill(process, plan.hard_timeout_s)
    leftovers = _kill_session_leftovers(process.pid)

    values = _read_values(result_path)
    values["trial_s"] = time.monotonic() - started_s
    values["leftovers_killed"] = leftovers
    _explain_failure(values, plan, process.returncode, timed_out, log_path)
    return values


def _explain_failure(
    values: dict[str, Any],
    plan: Plan,
    returncode: int | None,
    timed_out: bool,
    log_path: Path,
) -> None:
    """Mark a trial that never reported, and attach its log to any failure."""
    if timed_out:
        values["hard_timeout"] = True
        values.setdefault("notes", []).append(
            f"hard timeout ({plan.hard_timeout_s:.0f} s) hit; trial killed"
        )
    if not values.pop("complete", False) and "error" not in values:
        values["error"] = (
            f"no result: hard timeout of {plan.hard_timeout_s:.0f} s hit, trial killed"
            if timed_out
            else f"trial exited with code {returncode} before reporting"
        )
    if "error" in values:
        values["log_tail"] = _tail(log_path)


def failure_notes(results: Results) -> list[str]:
    """One line per contender with failed rounds: how many, and the first error."""
    notes = []
    for contender, runs in results.items():
        failed = [run for run in runs if "error" in run and run["error"] != SKIPPED]
        skipped = sum(run.get("error") == SKIPPED for run in runs)
        if failed:
            first = str(failed[0]["error"]).splitlines()[0][:200]
            also = f", {skipped} more skipped after it hung" if skipped else ""
            notes.append(
                f"{contender}: {len(failed)} of {len(runs)} runs failed{also}; "
                f"first error: {first} (log tail with thread stacks in latest.json)"
            )
    return notes


def leftover_notes(results: Results) -> list[str]:
    """One line per contender whose processes outlived a trial and were killed."""
    notes = []
    for contender, runs in results.items():
        killed = [run.get("leftovers_killed", 0) for run in runs]
        if any(killed):
            notes.append(
                f"{contender}: processes outlived the trial in "
                f"{sum(n > 0 for n in killed)} of {len(runs)} runs "
                f"({sum(killed)} in all); the harness killed them."
            )
    return notes


def _wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for the trial; past ``timeout_s`` SIGKILL it. True if it was killed."""
    try:
        process.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True


def _kill_session_leftovers(session_id: int) -> int:
    """Give the trial's other processes a moment to exit, then SIGKILL the rest.

    A session id stays reserved while any member lives, so every process found
    under it was started by this trial, whatever its process group (paas workers
    move to groups of their own).
    """
    deadline_s = time.monotonic() + _LEFTOVER_GRACE_S
    alive = _live_members(session_id)
    while alive and time.monotonic() < deadline_s:
        time.sleep(_LEFTOVER_POLL_S)
        alive = [process for process in alive if _is_live(process)]
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5.0)
    return len(alive)


def _live_members(session_id: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id and _is_live(process):
                members.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _is_live(process: psutil.Process) -> bool:
    # An orphan that exited stays a zombie until init reaps it, which can take
    # seconds; it holds no CPU or memory, so it counts as gone.
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_values(path: Path) -> dict[str, Any]:
    try:
        values: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-_LOG_TAIL_CHARS:].strip() or "(empty log)"
