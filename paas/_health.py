"""Worker health: decide from observed facts whether a worker must be killed.

The supervisor calls :func:`diagnose` for every live worker on each health check.
It returns the reason to kill (an error that becomes the attempt's failure) or
None. Kept apart from the loop so each rule reads on its own:

- start-up: no Ready within ``start_timeout_s``;
- deadline: the current attempt ran past its deadline;
- memory: resident memory above ``max_worker_memory_bytes``;
- heartbeat: silent for ``timeout_s`` *and* idle on the CPU. A prover in native
  code that holds the GIL silences the heartbeat thread but keeps burning CPU,
  so CPU growth of at least a tenth of the silent time counts as alive.
"""

from __future__ import annotations

from loguru import logger

from paas._config import ServiceConfig
from paas._errors import DeadlineExceeded, MemoryLimitExceeded, WorkerHung, WorkerLost
from paas._pool import WorkerProcess, WorkerState

BUSY_CPU_SHARE = 0.1


def diagnose(
    worker: WorkerProcess, now_s: float, config: ServiceConfig
) -> WorkerLost | None:
    """Why ``worker`` must be killed now, or None if it may go on."""
    if worker.state is WorkerState.STARTING:
        waited_s = now_s - worker.started_at_s
        if waited_s > config.heartbeat.start_timeout_s:
            return WorkerHung(worker.pid, waited_s, worker.backend, starting=True)
        return None
    return (
        _past_deadline(worker, now_s)
        or _over_memory(worker, now_s, config)
        or _silent_and_idle(worker, now_s, config.heartbeat.timeout_s)
    )


def _past_deadline(worker: WorkerProcess, now_s: float) -> WorkerLost | None:
    deadline_at_s = worker.attempt_deadline_at_s
    if worker.state is not WorkerState.BUSY or deadline_at_s is None:
        return None
    if now_s < deadline_at_s:
        return None
    return DeadlineExceeded(
        worker.pid, worker.attempt_deadline_s or 0.0, worker.backend
    )


def _over_memory(
    worker: WorkerProcess, now_s: float, config: ServiceConfig
) -> WorkerLost | None:
    limit_bytes = config.max_worker_memory_bytes
    if limit_bytes is None:
        return None
    # diagnose() runs on every loop step; reading /proc that often would put
    # file I/O per worker on the dispatch path, so sample once per heartbeat.
    if now_s - worker.memory_checked_at_s < config.heartbeat.interval_s:
        return None
    worker.memory_checked_at_s = now_s
    rss_bytes = worker.rss_bytes()
    if rss_bytes is None or rss_bytes <= limit_bytes:
        return None
    return MemoryLimitExceeded(worker.pid, rss_bytes, limit_bytes, worker.backend)


def _silent_and_idle(
    worker: WorkerProcess, now_s: float, timeout_s: float
) -> WorkerLost | None:
    silent_s = now_s - worker.last_seen_at_s
    if silent_s <= timeout_s:
        return None
    cpu_s = worker.cpu_time_s()
    if (
        cpu_s is not None
        and cpu_s - worker.cpu_s_at_last_seen >= BUSY_CPU_SHARE * silent_s
    ):
        logger.bind(backend=worker.backend, worker=worker.worker_id).warning(
            "Worker pid {} silent for {:.1f} s but busy on CPU; not a hang",
            worker.pid,
            silent_s,
        )
        worker.last_seen_at_s = now_s
        worker.cpu_s_at_last_seen = cpu_s
        worker.silent_but_busy += 1
        return None
    return WorkerHung(worker.pid, silent_s, worker.backend)
