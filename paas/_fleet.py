"""The fleet: every worker process of every pool, as the supervisor thread sees it.

It starts workers (with back-off after start-up deaths), watches them (process
sentinels registered in the supervisor's poller, heartbeats, deadlines, memory),
retires them after ``max_tasks_per_worker`` tasks, and replaces the lost. What a
loss means for the task the worker held is the supervisor's business: the fleet
reports it through ``on_lost``. Runs only on the supervisor thread, except
``worker_pids``, a snapshot that is replaced whole and safe to read anywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from loguru import logger
from multiprocess import connection as mp_connection

from paas import _messages as wire
from paas._clock import Clock
from paas._config import ServiceConfig
from paas._errors import (
    DeadlineExceeded,
    MemoryLimitExceeded,
    PoolUnavailable,
    WorkerCrashed,
    WorkerHung,
    WorkerLost,
)
from paas._health import diagnose
from paas._metrics import Metrics
from paas._pool import Pool, WorkerProcess, WorkerState
from paas._transport import SupervisorTransport

OnLost = Callable[[WorkerProcess, WorkerLost], None]
OnUnavailable = Callable[[Pool], None]


class Fleet:
    """Spawns, watches, retires and replaces the worker processes of all pools."""

    def __init__(
        self,
        config: ServiceConfig,
        provers: Mapping[str, Mapping[str, Any]],
        clock: Clock,
        metrics: Metrics,
        on_lost: OnLost,
        on_unavailable: OnUnavailable,
    ) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._on_lost = on_lost
        self._on_unavailable = on_unavailable
        self.pools = {
            backend: Pool(backend, size, provers[backend])
            for backend, size in config.pools.items()
        }
        self.workers: dict[int, WorkerProcess] = {}
        self._by_sentinel: dict[int, WorkerProcess] = {}
        self._worker_ids = itertools.count(1)
        self.worker_pids: dict[str, tuple[int, ...]] = {b: () for b in config.pools}

    def attach(self, transport: SupervisorTransport) -> None:
        """Spawn workers against the supervisor's ipc dir, context and poller."""
        self._transport = transport
        self._poller = transport.poller

    def busy(self) -> int:
        return sum(w.state is WorkerState.BUSY for w in self.workers.values())

    def next_wake_s(self) -> float | None:
        """The earliest spawn time or attempt deadline the loop must wake for."""
        times = [
            pool.next_spawn_at_s
            for pool in self.pools.values()
            if len(pool.workers) < pool.size
        ]
        times += [
            w.attempt_deadline_at_s
            for w in self.workers.values()
            if w.attempt_deadline_at_s is not None
        ]
        return min(times, default=None)

    # -- messages from workers -----------------------------------------------------

    def mark_ready(self, worker: WorkerProcess) -> None:
        if worker.state is not WorkerState.STARTING:
            logger.warning("Worker {} sent Ready twice; ignored", worker.worker_id)
            return
        worker.move_to(WorkerState.IDLE)
        pool = self.pools[worker.backend]
        pool.idle.append(worker)
        pool.start_failures = 0
        pool.unavailable = None
        logger.bind(backend=worker.backend, worker=worker.worker_id).info(
            "Worker pid {} ready", worker.pid
        )

    def make_idle(self, worker: WorkerProcess) -> None:
        """The worker returned its credit: give it more work, or recycle it."""
        worker.task_id = worker.attempt_id = None
        worker.attempt_deadline_at_s = worker.attempt_deadline_s = None
        worker.tasks_done += 1
        limit = self._config.max_tasks_per_worker
        if limit is not None and worker.tasks_done >= limit:
            self._retire(worker)
            return
        worker.move_to(WorkerState.IDLE)
        self.pools[worker.backend].idle.append(worker)

    def _retire(self, worker: WorkerProcess) -> None:
        """Ask a worker between tasks to exit; its sentinel then frees the slot."""
        worker.move_to(WorkerState.RETIRING)
        try:
            worker.socket.send(wire.encode(wire.Shutdown()), zmq.NOBLOCK)
        except zmq.ZMQError:
            worker.kill()
        logger.bind(backend=worker.backend, worker=worker.worker_id).debug(
            "Recycling worker pid {} after {} tasks", worker.pid, worker.tasks_done
        )

    # -- watching ------------------------------------------------------------------

    def reap_dead(self, ready: Mapping[Any, int]) -> None:
        for sentinel in [fd for fd in ready if fd in self._by_sentinel]:
            worker = self._by_sentinel[sentinel]
            code = worker.exitcode()
            if code is None:
                continue
            if worker.state is WorkerState.RETIRING and code == 0:
                self._forget(worker)
                worker.close()
                self._metrics.workers_retired += 1
                continue
            starting = worker.state is WorkerState.STARTING
            error = WorkerCrashed(
                worker.pid,
                code,
                worker.backend,
                starting=starting,
                idle=not starting and worker.task_id is None,
            )
            self.lose(worker, error)

    def check_health(self) -> None:
        now_s = self._clock.monotonic()
        for worker in list(self.workers.values()):
            if worker.state is WorkerState.RETIRING:
                continue
            busy_before = worker.silent_but_busy
            error = diagnose(worker, now_s, self._config)
            self._metrics.silent_but_busy += worker.silent_but_busy - busy_before
            if error is not None:
                worker.kill()
                self.lose(worker, error)

    def lose(self, worker: WorkerProcess, error: WorkerLost) -> None:
        """Release a dead or doomed worker, then report what it held."""
        was_starting = worker.state is WorkerState.STARTING
        self._forget(worker)
        worker.close()
        self._count(error)
        if was_starting:
            self._start_failed(worker, error)
        else:
            logger.bind(backend=worker.backend, worker=worker.worker_id).warning(
                "Worker lost: {}", error
            )
        self._on_lost(worker, error)

    def _count(self, error: WorkerLost) -> None:
        if isinstance(error, WorkerHung):
            self._metrics.workers_hung += 1
        elif isinstance(error, DeadlineExceeded):
            self._metrics.deadlines_exceeded += 1
        elif isinstance(error, MemoryLimitExceeded):
            self._metrics.memory_kills += 1
        else:
            self._metrics.workers_crashed += 1

    def _start_failed(self, worker: WorkerProcess, error: WorkerLost) -> None:
        """Back off before the next start; give up on the queue after too many."""
        pool = self.pools[worker.backend]
        self._metrics.start_failures += 1
        pool.start_failures += 1
        delay_s = min(
            self._config.restart_backoff_max_s,
            self._config.restart_backoff_s * 2 ** min(pool.start_failures - 1, 30),
        )
        pool.next_spawn_at_s = self._clock.monotonic() + delay_s
        reason = worker.start_error or str(error)
        logger.bind(backend=worker.backend, worker=worker.worker_id).error(
            "Worker failed during start-up ({}); next start in {:.2f} s",
            reason,
            delay_s,
        )
        up = any(w.state is not WorkerState.STARTING for w in pool.workers.values())
        if pool.start_failures >= self._config.max_start_failures and not up:
            error = PoolUnavailable(pool.backend, pool.start_failures, reason)
            pool.unavailable = str(error)
            self._on_unavailable(pool)

    def _forget(self, worker: WorkerProcess) -> None:
        self.workers.pop(worker.worker_id, None)
        pool = self.pools[worker.backend]
        pool.workers.pop(worker.worker_id, None)
        if self._by_sentinel.pop(worker.sentinel, None) is not None:
            self._poller.unregister(worker.sentinel)
        self.worker_pids[pool.backend] = tuple(w.pid for w in pool.workers.values())

    # -- starting and stopping -----------------------------------------------------

    def spawn_missing(self) -> None:
        now_s = self._clock.monotonic()
        for pool in self.pools.values():
            while len(pool.workers) < pool.size and now_s >= pool.next_spawn_at_s:
                self._spawn(pool, now_s)

    def _spawn(self, pool: Pool, now_s: float) -> None:
        worker = WorkerProcess(
            worker_id=next(self._worker_ids),
            backend=pool.backend,
            provers=pool.provers,
            context=self._transport.context,
            ipc_dir=self._transport.ipc_dir,
            result_endpoint=self._transport.inbox_endpoint,
            heartbeat_interval_s=self._config.heartbeat.interval_s,
            max_message_bytes=self._config.max_message_bytes,
            start_method=self._config.start_method,
            now_s=now_s,
        )
        pool.workers[worker.worker_id] = worker
        self.workers[worker.worker_id] = worker
        self._by_sentinel[worker.sentinel] = worker
        self._poller.register(worker.sentinel, zmq.POLLIN)
        self.worker_pids[pool.backend] = tuple(w.pid for w in pool.workers.values())
        self._metrics.workers_started += 1
        logger.bind(backend=pool.backend, worker=worker.worker_id).debug(
            "Started worker pid {}", worker.pid
        )

    def close_all(self) -> None:
        """Ask idle workers to exit, kill the rest, and reap them all."""
        workers = list(self.workers.values())
        for worker in workers:
            if worker.state in (WorkerState.STARTING, WorkerState.BUSY):
                worker.kill()  # any drain is over: what still runs is cut off now
                continue
            try:
                worker.socket.send(wire.encode(wire.Shutdown()), zmq.NOBLOCK)
            except zmq.ZMQError:
                worker.kill()  # its peer is gone already
        _wait_for_exit(workers, self._config.shutdown_grace_s, self._clock)
        for worker in workers:
            self._forget(worker)
            worker.close()


def _wait_for_exit(workers: list[WorkerProcess], grace_s: float, clock: Clock) -> None:
    deadline_s = clock.monotonic() + grace_s
    pending = {w.sentinel: w for w in workers if w.exitcode() is None}
    while pending:
        remaining_s = deadline_s - clock.monotonic()
        if remaining_s <= 0:
            return
        for sentinel in mp_connection.wait(list(pending), timeout=remaining_s):
            pending.pop(sentinel)
