"""``python -m benchmarks.containment``: how fast paas contains a lost worker.

    kill     SIGKILL a busy worker -> its task starts again on the idle worker
             (p50/p95 over --kills runs; target p50 <= 100 ms), and the pool is
             back to full size with a ready replacement (target <= 1 s)
    freeze   SIGSTOP a busy worker -> its task starts again elsewhere, against
             the configured heartbeat timeout (target <= timeout + 0.2 s)

Each sample reads times off the markers the prover writes when an attempt
starts (file mtimes, nanoseconds), so the sampling loop's own polling adds
nothing to the numbers. Writes benchmarks/results/containment.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paas
from paas.testing import PROGRAM_KEY, Job, ScriptedProver, script_of

RESULTS = Path(__file__).resolve().parent / "results" / "containment.md"
_GUARD_S = 60.0


def _wait_for(condition: Callable[[], object], what: str) -> None:
    deadline_s = time.monotonic() + _GUARD_S
    while not condition():
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.001)


def _launch(heartbeat: paas.HeartbeatConfig) -> paas.ServiceHandle:
    config = paas.ServiceConfig(
        pools={"native": 2},
        retry=paas.RetryPolicy(max_retries=1000, base_delay_s=0.0, max_delay_s=0.0),
        heartbeat=heartbeat,
    )
    return (
        paas.ProverServiceBuilder(config)
        .register(PROGRAM_KEY, input_fetcher=script_of, prover=ScriptedProver())
        .launch()
    )


def _ready_workers(handle: paas.ServiceHandle) -> int:
    workers = list(handle._supervisor.fleet.workers.values())
    return sum(w.state.name in ("IDLE", "BUSY") for w in workers)


def _one_loss(
    handle: paas.ServiceHandle, workdir: Path, n: int, sig: signal.Signals
) -> tuple[float, float]:
    """Hit the worker proving a fresh task; return (to restart s, to full pool s)."""
    marker, release = workdir / f"m{n}", workdir / f"r{n}"
    script = {"do": "wait_for_file", "path": str(release), "marker": str(marker)}
    task_id = handle.submit_task(Job(f"{sig.name}-{n}", script), "native")
    _wait_for(lambda: marker.exists() and marker.read_text(), "the first attempt")
    victim = int(marker.read_text())

    hit_ns = time.time_ns()
    os.kill(victim, sig)
    _wait_for(
        lambda: marker.read_text() not in ("", str(victim)), "the task to start again"
    )
    restarted_s = (marker.stat().st_mtime_ns - hit_ns) / 1e9
    _wait_for(lambda: _ready_workers(handle) == 2, "a ready replacement worker")
    full_s = (time.time_ns() - hit_ns) / 1e9

    release.touch()
    handle.wait(task_id, timeout_s=_GUARD_S)
    return restarted_s, full_s


def _series(
    sig: signal.Signals, runs: int, heartbeat: paas.HeartbeatConfig
) -> list[tuple[float, float]]:
    with (
        tempfile.TemporaryDirectory(prefix="paas-contain-") as tmp,
        _launch(heartbeat) as handle,
    ):
        _wait_for(lambda: _ready_workers(handle) == 2, "two ready workers")
        return [_one_loss(handle, Path(tmp), n, sig) for n in range(runs)]


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(name: str, values: Sequence[float], target: str, met: bool) -> str:
    p50_ms, p95_ms = statistics.median(values) * 1000, _p(values, 0.95) * 1000
    verdict = "yes" if met else "**no**"
    return (
        f"| {name} | {p50_ms:.0f} | {p95_ms:.0f} | {max(values) * 1000:.0f} "
        f"| {target} | {verdict} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.containment")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--freezes", type=int, default=10)
    parser.add_argument(
        "--timeout-s", type=float, default=1.0, help="heartbeat timeout"
    )
    args = parser.parse_args(argv)

    heartbeat = paas.HeartbeatConfig(interval_s=0.1, timeout_s=args.timeout_s)
    kills = _series(signal.SIGKILL, args.kills, heartbeat)
    freezes = _series(signal.SIGSTOP, args.freezes, heartbeat)

    restart = [k[0] for k in kills]
    refill = [k[1] for k in kills]
    detect = [f[0] for f in freezes]
    lines = [
        "# Failure containment latency",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"cores: {os.cpu_count()}; 2 workers; heartbeat interval 0.1 s, "
        f"timeout {args.timeout_s:g} s; retries without backoff.",
        f"- {args.kills} SIGKILLs and {args.freezes} SIGSTOPs of a busy worker.",
        "",
        "| measure | p50 ms | p95 ms | max ms | target | met |",
        "|---|--:|--:|--:|---|:-:|",
        _row(
            "SIGKILL -> task starts again",
            restart,
            "p50 <= 100 ms",
            statistics.median(restart) <= 0.1,
        ),
        _row(
            "SIGKILL -> pool full and ready", refill, "<= 1 s", _p(refill, 0.95) <= 1.0
        ),
        _row(
            "SIGSTOP -> task starts again",
            detect,
            f"<= timeout + 0.2 s = {args.timeout_s + 0.2:g} s",
            _p(detect, 0.95) <= args.timeout_s + 0.2,
        ),
        "",
    ]
    text = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
