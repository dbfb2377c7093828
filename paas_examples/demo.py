"""``paas demo``: prove a real batch on two backend pools and verify every proof.

    plan      a fresh run dir, the service's state_dir (tasks.db, proofs/); one
              lane per backend (plan.py); Groth16 setup, key -> <run>/keys
    launch    one pool per backend, --workers processes each; every Groth16
              worker loads the key file once, in its prover's setup()
    signals   the service's own handlers while the batch runs: the first
              SIGINT/SIGTERM drains it, a second stops it at once (interrupt.py)
    submit    every program of every lane; paas fetches inputs on host threads
    watch     poll task statuses into one progress bar per backend until every
              task has ended, --timeout-s has passed or the service stopped;
              with --chaos, a thread meanwhile kills and freezes workers (chaos.py)
    verify    read each proof back with handle.wait and check it with chiavdf or
              groth16py (verify.py); after a signal, from the run dir instead
    report    per-backend table, the chaos summary (report.py), every lost task
              and bad proof, and after a signal what was left unfinished

Proofs are verified after the batch rather than as they land, so the host's own
verification does not take CPU from the workers whose efficiency is measured.
With --chaos, the host's fds and child processes are counted before launch and
after shutdown (audit.py), and every worker pid the chaos thread saw must be gone.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from paas import (
    InternalError,
    ServiceClosedError,
    ServiceHandle,
    StoreError,
    TaskFailed,
    TaskRecord,
)
from paas_examples import chaos, report
from paas_examples.audit import HostSnapshot, PidLedger, describe, leftover_processes
from paas_examples.interrupt import Interrupt, drain_on_signals, wait_for_drain
from paas_examples.plan import Lane, Plan, Submitted, make_plan, new_run_dir, print_plan
from paas_examples.verify import (
    BAD_PROOF,
    LEFT,
    LOST,
    Problem,
    from_run_dir,
    read_back,
    stored_records,
    verify_all,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1

_POLL_INTERVAL_S = 0.2
_MAX_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class Outcome:
    """What the batch came to, gathered before the report is printed."""

    batch: list[Submitted]
    records: dict[str, TaskRecord]
    problems: dict[str, Problem]
    metrics: dict[str, int]
    submitted_at: float
    interrupt: Interrupt
    monkey: chaos.ChaosMonkey | None


def main(args: argparse.Namespace) -> int:
    """Run the demo with the options ``paas demo`` parsed; 0 if all proofs verify.

    After a stop signal, returns 128 + its number, as a shell would report it.
    """
    out = Console(highlight=False)
    started_s = time.monotonic()
    plan = make_plan(args, new_run_dir(Path(args.state_dir)), out)
    print_plan(out, plan, args)

    ledger = PidLedger()
    before = HostSnapshot.before_launch()
    outcome = _run_batch(plan, args, ledger)
    after = HostSnapshot.take()

    _print_results(out, plan, outcome, args)
    summary = None
    if outcome.monkey is not None:
        leftovers = leftover_processes(ledger, before, after)
        fd_delta = after.open_fds - before.open_fds
        summary = _chaos_summary(plan, outcome, len(ledger), leftovers, fd_delta)
        _print_chaos(out, summary, leftovers)
    out.print(f"Whole run: {time.monotonic() - started_s:.1f} s.")
    return _print_verdict(out, plan, outcome, summary)


# -- running the batch ----------------------------------------------------------


def _run_batch(plan: Plan, args: argparse.Namespace, ledger: PidLedger) -> Outcome:
    """Launch, prove and read back; after a signal, read back from the run dir."""
    with plan.builder.launch() as handle:
        submitted_at = time.time()
        batch, interrupt, monkey, unfinished = _prove(handle, plan, args, ledger)
        metrics = handle.metrics()
        checked = None
        if interrupt.signum is None:
            records = {task.task_id: handle.task(task.task_id) for task in batch}
            checked = records, verify_all(batch, records, read_back(handle), unfinished)

    if checked is None:
        # The signal shut the service down, its task store included.
        records = stored_records(plan.run_dir, batch)
        checked = records, verify_all(batch, records, from_run_dir(plan), unfinished)
    records, problems = checked
    return Outcome(batch, records, problems, metrics, submitted_at, interrupt, monkey)


def _prove(
    handle: ServiceHandle, plan: Plan, args: argparse.Namespace, ledger: PidLedger
) -> tuple[list[Submitted], Interrupt, chaos.ChaosMonkey | None, Problem]:
    """Submit and watch the batch, under chaos if asked; drain on a stop signal.

    Also returns what a task still unfinished at the end counts as.
    """
    with drain_on_signals(handle, args.drain_timeout_s) as interrupt:
        batch = _submit(handle, plan.lanes, interrupt)
        with _maybe_chaos(handle, args, ledger) as monkey:
            unfinished = _watch(handle, plan.lanes, batch, args.timeout_s, interrupt)
        if interrupt.signum is not None:
            # Still under the service's handlers, so a second signal cuts it short.
            wait_for_drain(handle, args.drain_timeout_s)
    if interrupt.signum is not None:
        # At once, unless the signal came just as the old handlers went back.
        wait_for_drain(handle, args.drain_timeout_s)
    return batch, interrupt, monkey, unfinished


def _submit(
    handle: ServiceHandle, lanes: Sequence[Lane], interrupt: Interrupt
) -> list[Submitted]:
    batch: list[Submitted] = []
    for lane in lanes:
        try:
            # One transaction per lane: far cheaper than a commit per task.
            task_ids = handle.submit_many(lane.programs, lane.backend)
        except (ServiceClosedError, StoreError):
            if interrupt.signum is None:
                raise
            return batch  # a signal came while submitting: the rest never was
        pairs = zip(lane.programs, task_ids, strict=True)
        batch += [Submitted(lane, program, task_id) for program, task_id in pairs]
    return batch


def _maybe_chaos(
    handle: ServiceHandle, args: argparse.Namespace, ledger: PidLedger
) -> contextlib.AbstractContextManager[chaos.ChaosMonkey | None]:
    if not args.chaos:
        return contextlib.nullcontext()
    return chaos.ChaosMonkey(
        handle,
        ledger,
        rate_per_s=args.chaos_rate,
        freeze_share=args.chaos_freeze_share,
        rng=random.Random(args.seed),
        max_events=args.chaos_events,
    )


def _watch(
    handle: ServiceHandle,
    lanes: Sequence[Lane],
    batch: Sequence[Submitted],
    timeout_s: float,
    interrupt: Interrupt,
) -> Problem:
    """Show progress until every task has ended; else say what stopped the watch.

    The Problem returned is what a task still unfinished counts as.
    """
    deadline_s = time.monotonic() + timeout_s
    pending = list(batch)
    with report.progress() as progress:
        bars = {
            lane.backend: progress.add_task(lane.backend, total=len(lane.programs))
            for lane in lanes
        }
        while pending and interrupt.signum is None and time.monotonic() < deadline_s:
            try:
                _wait_a_little(handle, pending[0])
                pending = _advance(handle, pending, progress, bars)
            except ServiceClosedError:
                if interrupt.signum is None:
                    return Problem(LOST, "when the service stopped by itself")
            except StoreError:
                # Once drained, the shutdown a signal started closes the store.
                if interrupt.signum is None:
                    raise
    if interrupt.signum is not None:
        return Problem(LEFT, f"when {interrupt.name} came")
    return Problem(LOST, f"after --timeout-s {timeout_s:g}")


def _wait_a_little(handle: ServiceHandle, task: Submitted) -> None:
    """Wait until ``task`` ends or the poll interval is over.

    Unlike a sleep, raises ServiceClosedError once the service is shutting down or
    has stopped, whether a signal or a crash of the supervisor stopped it.
    """
    with contextlib.suppress(TimeoutError, TaskFailed, InternalError):
        handle.wait(task.task_id, timeout_s=_POLL_INTERVAL_S)


def _advance(
    handle: ServiceHandle,
    pending: Sequence[Submitted],
    progress: Progress,
    bars: dict[str, Any],
) -> list[Submitted]:
    still_running = []
    for task in pending:
        if handle.status(task.task_id).is_terminal:
            progress.advance(bars[task.lane.backend])
        else:
            still_running.append(task)
    return still_running


# -- report ---------------------------------------------------------------------


def _print_results(
    out: Console, plan: Plan, outcome: Outcome, args: argparse.Namespace
) -> None:
    stats = [
        report.lane_stats(
            lane.backend,
            [outcome.records[t.task_id] for t in outcome.batch if t.lane is lane],
            outcome.problems.keys(),
            outcome.submitted_at,
            args.workers,
        )
        for lane in plan.lanes
    ]
    out.print(report.table(stats))
    metrics = outcome.metrics
    out.print(
        f"Workers: {metrics['workers_started']} started, "
        f"{metrics['workers_crashed']} crashed, {metrics['workers_hung']} hung."
    )


def _chaos_summary(
    plan: Plan, outcome: Outcome, pids_seen: int, leftovers: set[int], fd_delta: int
) -> report.ChaosSummary:
    assert outcome.monkey is not None
    lost = sum(problem.kind == LOST for problem in outcome.problems.values())
    return report.ChaosSummary(
        tasks=len(outcome.batch),
        workers_seen=pids_seen,
        kills=outcome.monkey.kills,
        freezes=outcome.monkey.freezes,
        hangs=outcome.metrics["workers_hung"],
        crashes=outcome.metrics["workers_crashed"],
        retries=outcome.metrics["retries"],
        lost=lost,
        completed_twice=sum(s.extra_puts() for s in plan.proof_stores.values()),
        leftover_processes=len(leftovers),
        fd_delta=fd_delta,
    )


def _print_chaos(
    out: Console, summary: report.ChaosSummary, leftovers: set[int]
) -> None:
    out.print(report.chaos_table(summary))
    for pid in sorted(leftovers):
        out.print(f"  [red]leftover process[/] {describe(pid)}")


def _print_verdict(
    out: Console, plan: Plan, outcome: Outcome, summary: report.ChaosSummary | None
) -> int:
    _print_problems(out, outcome)
    if outcome.interrupt.signum is not None:
        return _print_interrupted(out, plan, outcome)

    kinds = Counter(problem.kind for problem in outcome.problems.values())
    failed_checks = [] if summary is None else summary.failed_checks()
    if not outcome.problems and not failed_checks:
        count = len(outcome.batch)
        out.print(f"[green]OK: all {count} proofs were read back and verified.[/]")
        return EXIT_OK
    if outcome.problems:
        out.print(
            f"[red]FAILED: {kinds[LOST]} task(s) lost (not COMPLETED), "
            f"{kinds[BAD_PROOF]} proof(s) failed verification.[/]"
        )
    if failed_checks:
        out.print(f"[red]FAILED chaos checks: {', '.join(failed_checks)}.[/]")
    return EXIT_PROBLEMS


def _print_interrupted(out: Console, plan: Plan, outcome: Outcome) -> int:
    signum = outcome.interrupt.signum
    assert signum is not None
    kinds = Counter(problem.kind for problem in outcome.problems.values())
    planned = sum(len(lane.programs) for lane in plan.lanes)
    out.print(
        f"[yellow]Interrupted by {outcome.interrupt.name}: "
        f"{len(outcome.batch) - len(outcome.problems)} of {planned} tasks proven and "
        f"verified, {len(outcome.batch)} submitted; {kinds[LOST]} lost, "
        f"{kinds[BAD_PROOF]} bad proof(s).[/]",
        soft_wrap=True,
    )
    left = Counter(
        str(outcome.records[task_id].status)
        for task_id, problem in outcome.problems.items()
        if problem.kind == LEFT
    )
    if left:
        statuses = ", ".join(f"{count} {status}" for status, count in left.items())
        out.print(f"Left unfinished in tasks.db: {statuses}.", soft_wrap=True)
    return 128 + signum


def _print_problems(out: Console, outcome: Outcome) -> None:
    # Tasks left unfinished by a signal are expected; only the others are named.
    named = [
        task
        for task in outcome.batch
        if task.task_id in outcome.problems
        and outcome.problems[task.task_id].kind != LEFT
    ]
    for task in named[:_MAX_PROBLEMS_SHOWN]:
        problem = outcome.problems[task.task_id]
        out.print(
            f"  {problem.kind}: {task.lane.backend} {task.program.program_id}, "
            f"task {task.task_id}\n    {problem.detail}"
        )
    if len(named) > _MAX_PROBLEMS_SHOWN:
        out.print(f"  ... and {len(named) - _MAX_PROBLEMS_SHOWN} more")
