"""``paas demo``: prove a real batch on two backend pools and verify every proof.

    plan      one lane per backend: its programs and how to verify their proofs
    setup     compile chain.circom, run the Groth16 setup, key -> <state>/keys
    launch    one pool per backend, --workers processes each; every Groth16
              worker loads the key file once, in its prover's setup()
    submit    every program of every lane; paas fetches inputs on host threads
    watch     poll task statuses into one progress bar per backend until every
              task has ended or --timeout-s has passed
    verify    read each proof back (handle.wait, served by the FileProofStore
              under <state>/proofs) and check it with chiavdf or groth16py
    report    per-backend table (report.py), then every lost task and bad proof

Proofs are verified after the batch rather than as they land, so the host's own
verification does not take CPU from the workers whose efficiency is measured.
Without groth16py the VDF program runs on two backends, vdf-a and vdf-b.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from paas import (
    FileProofStore,
    InternalError,
    ProverServiceBuilder,
    ServiceConfig,
    ServiceHandle,
    TaskFailed,
    TaskRecord,
)
from paas_examples import groth16, report, vdf

EXIT_OK = 0
EXIT_PROBLEMS = 1

_POLL_INTERVAL_S = 0.2
# Only tasks that have ended are read back, so this bounds a wait that returns at
# once; it is there so that a bug in paas shows up as an error, not a hang.
_READ_BACK_TIMEOUT_S = 30.0
_MAX_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class Lane:
    """One backend's share of the batch: its programs and how to check a proof."""

    backend: str
    description: str
    programs: Sequence[Any]
    verify: Callable[[Any, bytes], bool]


@dataclass(frozen=True)
class Submitted:
    lane: Lane
    program: Any
    task_id: str


@dataclass(frozen=True)
class Problem:
    """Why a task does not count: ``lost`` (not COMPLETED) or ``bad proof``."""

    kind: str
    detail: str


LOST = "lost"
BAD_PROOF = "bad proof"


def main(args: argparse.Namespace) -> int:
    """Run the demo with the options ``paas demo`` parsed; 0 if all proofs verify."""
    out = Console(highlight=False)
    started_s = time.monotonic()
    proofs_dir = _fresh_proofs_dir(Path(args.state_dir))
    lanes, builder = _plan(args, proofs_dir, out)
    _print_plan(out, lanes, args)

    with builder.launch() as handle:
        submitted_at = time.time()
        batch = _submit(handle, lanes)
        _watch(handle, lanes, batch, args.timeout_s)
        records = {task.task_id: handle.task(task.task_id) for task in batch}
        problems = _verify_all(handle, batch, records, args.timeout_s)
        metrics = handle.metrics()

    stats = [
        report.lane_stats(
            lane.backend,
            [records[task.task_id] for task in batch if task.lane is lane],
            problems.keys(),
            submitted_at,
            args.workers,
        )
        for lane in lanes
    ]
    out.print(report.table(stats))
    out.print(
        f"Workers: {metrics['workers_started']} started, "
        f"{metrics['workers_crashed']} crashed, {metrics['workers_hung']} hung. "
        f"Whole run: {time.monotonic() - started_s:.1f} s."
    )
    return _print_verdict(out, batch, problems)


# -- plan and setup -------------------------------------------------------------


def _fresh_proofs_dir(state_dir: Path) -> Path:
    # Task ids repeat from run to run (they derive from the program), so a proof
    # left by an earlier run would be read back as this run's: start from nothing.
    proofs_dir = state_dir / "proofs"
    shutil.rmtree(proofs_dir, ignore_errors=True)
    proofs_dir.mkdir(parents=True)
    return proofs_dir


def _plan(
    args: argparse.Namespace, proofs_dir: Path, out: Console
) -> tuple[list[Lane], ProverServiceBuilder]:
    missing = groth16.unavailable_reason()
    if missing is None:
        return _vdf_and_groth16(args, proofs_dir, out)
    out.print(
        f"[yellow]groth16py cannot be imported ({missing}), so the Groth16 program "
        "is skipped and the VDF runs on two backends instead.[/]"
    )
    return _vdf_on_two_backends(args, proofs_dir)


def _vdf_and_groth16(
    args: argparse.Namespace, proofs_dir: Path, out: Console
) -> tuple[list[Lane], ProverServiceBuilder]:
    keys = _groth16_keys(Path(args.state_dir) / "keys", out)
    groth16_lane = Lane(
        backend="groth16",
        description=f"Groth16 of Chain({keys.rounds}), {2 * keys.rounds} constraints",
        programs=[groth16.make_program(args.seed, i) for i in range(args.tasks)],
        verify=functools.partial(groth16.verify, keys),
    )
    lanes = [_vdf_lane(args, "vdf", first_index=0), groth16_lane]

    builder = _builder(lanes, args.workers)
    _register_vdf(builder, ["vdf"], proofs_dir)
    builder.register(
        groth16.ROUTING_KEY,
        input_fetcher=groth16.fetch_input,
        prover=groth16.Groth16Prover(keys.key_path, backend="groth16"),
        proof_store=FileProofStore(proofs_dir / groth16.ROUTING_KEY),
    )
    return lanes, builder


def _vdf_on_two_backends(
    args: argparse.Namespace, proofs_dir: Path
) -> tuple[list[Lane], ProverServiceBuilder]:
    # Distinct programs per backend, so both lanes do fresh work.
    lanes = [
        _vdf_lane(args, "vdf-a", first_index=0),
        _vdf_lane(args, "vdf-b", first_index=args.tasks),
    ]
    builder = _builder(lanes, args.workers)
    _register_vdf(builder, ["vdf-a", "vdf-b"], proofs_dir)
    return lanes, builder


def _groth16_keys(directory: Path, out: Console) -> groth16.CircuitKeys:
    out.print("Compiling chain.circom and running the Groth16 setup...")
    started_s = time.monotonic()
    keys = groth16.setup_keys(directory)
    out.print(f"Groth16 setup done in {time.monotonic() - started_s:.1f} s.")
    return keys


def _vdf_lane(args: argparse.Namespace, backend: str, first_index: int) -> Lane:
    indexes = range(first_index, first_index + args.tasks)
    return Lane(
        backend=backend,
        description=(
            f"VDF, {args.iterations} iterations, "
            f"{vdf.DISCRIMINANT_BITS}-bit discriminant"
        ),
        programs=[vdf.make_program(args.seed, i, args.iterations) for i in indexes],
        verify=vdf.verify,
    )


def _builder(lanes: Sequence[Lane], workers: int) -> ProverServiceBuilder:
    return ProverServiceBuilder(
        ServiceConfig(pools={lane.backend: workers for lane in lanes})
    )


def _register_vdf(
    builder: ProverServiceBuilder, backends: list[str], proofs_dir: Path
) -> None:
    builder.register(
        vdf.ROUTING_KEY,
        input_fetcher=vdf.fetch_input,
        prover=[vdf.VdfProver(backend) for backend in backends],
        proof_store=FileProofStore(proofs_dir / vdf.ROUTING_KEY),
    )


def _print_plan(out: Console, lanes: Sequence[Lane], args: argparse.Namespace) -> None:
    out.print(
        f"Batch: {args.tasks} tasks per backend, {args.workers} worker(s) per pool, "
        f"{os.cpu_count() or '?'} CPU cores."
    )
    for lane in lanes:
        out.print(f"  [bold]{lane.backend:<8}[/] {lane.description}")
    out.print(f"Proofs go to {Path(args.state_dir) / 'proofs'}.")


# -- running the batch ----------------------------------------------------------


def _submit(handle: ServiceHandle, lanes: Sequence[Lane]) -> list[Submitted]:
    return [
        Submitted(lane, program, handle.submit_task(program, lane.backend))
        for lane in lanes
        for program in lane.programs
    ]


def _progress() -> Progress:
    # On stderr, so stdout carries only the plan and the results.
    return Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _watch(
    handle: ServiceHandle,
    lanes: Sequence[Lane],
    batch: Sequence[Submitted],
    timeout_s: float,
) -> None:
    """Show progress until every task has ended or ``timeout_s`` has passed."""
    deadline_s = time.monotonic() + timeout_s
    pending = list(batch)
    with _progress() as progress:
        bars = {
            lane.backend: progress.add_task(lane.backend, total=len(lane.programs))
            for lane in lanes
        }
        while pending and time.monotonic() < deadline_s:
            time.sleep(_POLL_INTERVAL_S)
            still_running = []
            for task in pending:
                if handle.status(task.task_id).is_terminal:
                    progress.advance(bars[task.lane.backend])
                else:
                    still_running.append(task)
            pending = still_running


def _verify_all(
    handle: ServiceHandle,
    batch: Sequence[Submitted],
    records: dict[str, TaskRecord],
    timeout_s: float,
) -> dict[str, Problem]:
    """Every task that did not end with a verified proof, and why."""
    problems: dict[str, Problem] = {}
    with _progress() as progress:
        bar = progress.add_task("verify", total=len(batch))
        for task in batch:
            status = records[task.task_id].status
            if status.is_terminal:
                problem = _read_back_and_verify(handle, task)
            else:
                problem = Problem(
                    LOST, f"still {status} after --timeout-s {timeout_s:g}"
                )
            if problem is not None:
                problems[task.task_id] = problem
            progress.advance(bar)
    return problems


def _read_back_and_verify(handle: ServiceHandle, task: Submitted) -> Problem | None:
    try:
        proof = handle.wait(task.task_id, timeout_s=_READ_BACK_TIMEOUT_S)
    except TaskFailed as exc:
        return Problem(
            LOST,
            f"failed after {exc.attempts} attempt(s): "
            f"{exc.error_type}: {exc.error_message}",
        )
    except InternalError as exc:  # COMPLETED, yet the proof store has nothing
        return Problem(BAD_PROOF, str(exc))
    if not task.lane.verify(task.program, proof):
        return Problem(BAD_PROOF, f"the {len(proof)}-byte proof does not verify")
    return None


# -- report ---------------------------------------------------------------------


def _print_verdict(
    out: Console, batch: Sequence[Submitted], problems: dict[str, Problem]
) -> int:
    if not problems:
        out.print(f"[green]OK: all {len(batch)} proofs were read back and verified.[/]")
        return EXIT_OK

    lost = sum(problem.kind == LOST for problem in problems.values())
    out.print(
        f"[red]FAILED: {lost} task(s) lost (not COMPLETED), "
        f"{len(problems) - lost} proof(s) failed verification.[/]"
    )
    named = [task for task in batch if task.task_id in problems]
    for task in named[:_MAX_PROBLEMS_SHOWN]:
        problem = problems[task.task_id]
        out.print(
            f"  {problem.kind}: {task.lane.backend} {task.program.program_id}, "
            f"task {task.task_id}\n    {problem.detail}"
        )
    if len(named) > _MAX_PROBLEMS_SHOWN:
        out.print(f"  ... and {len(named) - _MAX_PROBLEMS_SHOWN} more")
    return EXIT_PROBLEMS
