"""What ``paas demo`` runs: one lane per backend, a fresh run dir, a service builder.

run dir   <--state-dir>/run-<time>-<random>/, the service's state_dir: tasks
          in tasks.db (SQLite), proofs under proofs/<program>/, and the
          Groth16 key under keys/
lanes     vdf and groth16, or vdf-a and vdf-b without groth16py; each lane is
          a backend with its programs, its prover and how to verify a proof
builder   one pool per lane; each program is registered once, with the
          provers of all its lanes and a proof store that counts puts
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from paas import FileProofStore, ProverServiceBuilder, ServiceConfig
from paas_examples import chaos, groth16, vdf
from paas_examples.audit import CountingProofStore


@dataclass(frozen=True)
class Lane:
    """One backend's share of the batch: its programs, prover and proof check."""

    backend: str
    description: str
    program_key: str
    programs: Sequence[Any]
    fetch_input: Callable[[Any], Any]
    prover: Any
    verify: Callable[[Any, bytes], bool]


@dataclass(frozen=True)
class Plan:
    run_dir: Path
    lanes: list[Lane]
    proof_stores: dict[str, CountingProofStore]  # by program key
    builder: ProverServiceBuilder


@dataclass(frozen=True)
class Submitted:
    """One task of the batch, as submitted."""

    lane: Lane
    program: Any
    task_id: str


def new_run_dir(state_dir: Path) -> Path:
    """A directory of its own for this run, under ``state_dir``."""
    # Task ids derive from the programs, so they repeat from run to run, and a
    # SQLite store remembers finished tasks: a second run in the same directory
    # would find its whole batch COMPLETED and prove nothing.
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=state_dir)).absolute()


def make_plan(args: argparse.Namespace, run_dir: Path, out: Console) -> Plan:
    """Lanes for the options ``paas demo`` parsed, and a builder to launch them."""
    missing = groth16.unavailable_reason()
    if missing is None:
        keys = _groth16_keys(run_dir / "keys", out)
        lanes = [_vdf_lane(args, "vdf", first_index=0), _groth16_lane(args, keys)]
    else:
        out.print(
            f"[yellow]groth16py cannot be imported ({missing}), so the Groth16 "
            "program is skipped and the VDF runs on two backends instead.[/]"
        )
        # Distinct programs per backend, so both lanes do fresh work.
        lanes = [
            _vdf_lane(args, "vdf-a", first_index=0),
            _vdf_lane(args, "vdf-b", first_index=args.tasks),
        ]

    # Where the service would keep proofs by itself, wrapped to count the puts.
    proof_stores = {
        key: CountingProofStore(FileProofStore(run_dir / "proofs" / key))
        for key in dict.fromkeys(lane.program_key for lane in lanes)
    }
    builder = ProverServiceBuilder(_config(args, lanes, run_dir))
    for key, store in proof_stores.items():
        mine = [lane for lane in lanes if lane.program_key == key]
        builder.register(
            key,
            input_fetcher=mine[0].fetch_input,
            prover=[lane.prover for lane in mine],
            proof_store=store,
        )
    return Plan(run_dir, lanes, proof_stores, builder)


def print_plan(out: Console, plan: Plan, args: argparse.Namespace) -> None:
    out.print(
        f"Batch: {args.tasks} tasks per backend, {args.workers} worker(s) per pool, "
        f"{os.cpu_count() or '?'} CPU cores."
    )
    for lane in plan.lanes:
        out.print(f"  [bold]{lane.backend:<8}[/] {lane.description}")
    if args.chaos:
        freezes = args.chaos_freeze_share
        out.print(
            f"Chaos: {args.chaos_rate:g} events/s, seed {args.seed}; "
            f"{freezes:.0%} freezes (SIGSTOP), {1 - freezes:.0%} kills (SIGKILL)."
        )
    # Unwrapped, so the path can be copied from the terminal in one piece.
    out.print(f"Run directory: {plan.run_dir}", soft_wrap=True)
    out.print(
        "Ctrl-C lets running proofs finish and leaves queued tasks in the run "
        "directory; a second Ctrl-C stops at once."
    )


def _config(
    args: argparse.Namespace, lanes: Sequence[Lane], run_dir: Path
) -> ServiceConfig:
    config = ServiceConfig(
        pools={lane.backend: args.workers for lane in lanes}, state_dir=str(run_dir)
    )
    return chaos.hardened(config) if args.chaos else config


def _groth16_keys(directory: Path, out: Console) -> groth16.CircuitKeys:
    out.print("Compiling chain.circom and running the Groth16 setup...")
    started_s = time.monotonic()
    keys = groth16.setup_keys(directory)
    out.print(f"Groth16 setup done in {time.monotonic() - started_s:.1f} s.")
    return keys


def _groth16_lane(args: argparse.Namespace, keys: groth16.CircuitKeys) -> Lane:
    return Lane(
        backend="groth16",
        description=f"Groth16 of Chain({keys.rounds}), {2 * keys.rounds} constraints",
        program_key=groth16.ROUTING_KEY,
        programs=[groth16.make_program(args.seed, i) for i in range(args.tasks)],
        fetch_input=groth16.fetch_input,
        prover=groth16.Groth16Prover(keys.key_path, backend="groth16"),
        verify=functools.partial(groth16.verify, keys),
    )


def _vdf_lane(args: argparse.Namespace, backend: str, first_index: int) -> Lane:
    indexes = range(first_index, first_index + args.tasks)
    return Lane(
        backend=backend,
        description=(
            f"VDF, {args.iterations} iterations, "
            f"{vdf.DISCRIMINANT_BITS}-bit discriminant"
        ),
        program_key=vdf.ROUTING_KEY,
        programs=[vdf.make_program(args.seed, i, args.iterations) for i in indexes],
        fetch_input=vdf.fetch_input,
        prover=vdf.VdfProver(backend),
        verify=vdf.verify,
    )
