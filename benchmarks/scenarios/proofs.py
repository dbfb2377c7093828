"""Scenario 2, real proofs: chiavdf VDF proofs, where the work dwarfs dispatch.

Efficiency says how much of the two workers' time went into proving:
serial time / (workers x wall time), with the serial time measured in the same
round as the pool's wall time, so both saw the same machine. 1.0 is perfect;
spawn costs are excluded (pools are warm), so the rest is scheduling and the
host's own CPU use competing with the workers for two cores.
"""

from __future__ import annotations

import hashlib
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
from benchmarks._report import Metric, Section, format_values

WORKERS = 2
SERIAL = "serial (in-process)"


def plan(quick: bool) -> Plan:
    timeout_s = 30.0 if quick else 180.0
    warm_s = warm_timeout_s(quick)
    return Plan(
        scenario="proofs",
        contenders=[SERIAL, c.POOL_CS1, c.PPE_SUBMIT, c.LOKY, c.PEBBLE, c.PAAS],
        params={
            "proofs": 8 if quick else 40,
            "iterations": 20_000,
            "workers": WORKERS,
            "timeout_s": timeout_s,
            "warm_timeout_s": warm_s,
        },
        hard_timeout_s=hard_timeout_s(quick, warm_s, timeout_s),
        headline_key="wall_s",
        headline_unit="s",
    )


def run_trial(
    contender: str, params: dict[str, Any], emit: Callable[[dict[str, Any]], None]
) -> None:
    jobs = [[index, params["iterations"]] for index in range(params["proofs"])]
    if contender == SERIAL:
        _tasks.vdf_proof([0, 1])  # load chiavdf outside the timing, as warm pools do
        started_s = time.perf_counter()
        proofs = [_tasks.vdf_proof(job) for job in jobs]
        emit(_measurement(proofs, time.perf_counter() - started_s))
        return
    with c.running(
        contender, params["workers"], [_tasks.vdf_proof], params["warm_timeout_s"]
    ) as runner:
        started_s = time.perf_counter()
        outcomes = runner.run(_tasks.vdf_proof, jobs, params["timeout_s"])
        wall_s = time.perf_counter() - started_s
        failed = [o for o in outcomes if not isinstance(o, bytes)]
        if failed:
            raise RuntimeError(f"{len(failed)} proofs failed, first: {failed[0]!r}")
        emit(_measurement(outcomes, wall_s))  # type: ignore[arg-type]


def _measurement(proofs: list[bytes], wall_s: float) -> dict[str, Any]:
    # Order-free digest: pools that return results as they finish must agree too.
    digest = hashlib.sha256(b"".join(sorted(proofs))).hexdigest()[:16]
    return {"wall_s": wall_s, "proofs_digest": digest}


def summarize(plan: Plan, results: Results) -> Section:
    workers = plan.params["workers"]
    section = Section(
        title="Real proofs (chiavdf)",
        workload=(
            f"{plan.params['proofs']} chiavdf VDF proofs of "
            f"{plan.params['iterations']:,} iterations (1024-bit discriminant), "
            f"{workers} workers, warm pools. Efficiency = serial time / "
            f"({workers} x wall time), serial measured in the same round."
        ),
        metric=Metric("wall_s", "wall time s", higher_is_better=False, digits=2),
        reference=c.POOL_CS1,
        values={name: values_of(runs, "wall_s") for name, runs in results.items()},
    )
    serial_s = section.values[SERIAL]
    section.extras["efficiency"] = {
        name: _efficiency_cell(serial_s, walls, workers)
        for name, walls in section.values.items()
        if name != SERIAL
    }
    section.notes = [
        _digest_note(results),
        "An efficiency above 1.0 in a round means that round's serial run was "
        "slowed by other load on the machine; compare medians.",
    ]
    return section


def _efficiency_cell(
    serial_s: list[float | None], walls_s: list[float | None], workers: int
) -> str:
    per_round = [
        serial / (workers * wall) if serial and wall else None
        for serial, wall in zip(serial_s, walls_s, strict=False)
    ]
    return format_values(per_round)


def _digest_note(results: Results) -> str:
    digests = {
        run["proofs_digest"]
        for runs in results.values()
        for run in runs
        if "proofs_digest" in run
    }
    if len(digests) == 1:
        return "Every contender returned the same proofs as the serial run."
    return f"Proofs differ between runs or contenders: digests {sorted(digests)}."
