"""The supervisor: one thread in the host that owns every socket and worker.

    host threads            supervisor thread (one poll loop)          workers
    submit/fetch --post--> wake pipe
                           _run_commands: append the task to its pool queue
                           _dispatch: QUEUED -> PROVING --Assignment--> w<id> PULL
                           _drain_inbox <--Ready/Result/Failure/Heartbeat-- up PUSH
                             Result: store the proof, PROVING -> COMPLETED
                             Failure: TRANSIENT_FAILURE + backoff, or PERMANENT_FAILURE
                           _reap_dead: sentinel readable -> requeue the attempt
                           _check_workers: hang, deadline, memory -> kill, requeue
                           _requeue_due_retries: TRANSIENT_FAILURE -> QUEUED
                           _spawn_missing: refill pools, with start-up backoff

Host threads never touch a socket: they post callables to a queue and write one
byte to a pipe that the poll loop watches, next to the inbox socket and every
worker's process sentinel. A worker gets a task only after it reported Ready or
returned its previous attempt (its credit), so no task waits in the socket buffer
of a busy or dead worker. Each dispatch is an attempt with a fresh id; anything
that arrives for an attempt that is not the task's current one is dropped.

Stopping: a drain stops dispatching and spawning, lets running attempts finish
until the drain deadline, and leaves queued tasks queued in the store; then every
worker is told to exit, and killed if it does not within the grace period.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import msgspec
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
from paas._lifecycle import TaskStatus
from paas._pool import Pool, WorkerProcess, WorkerState
from paas._retry import Rng, backoff_delay_s, should_retry
from paas._store import TaskStore

_INBOX_BATCH = 512
_MAX_IPC_DIR_CHARS = 80
_BIG_FRAME_BYTES = 65536


class ProofStore(Protocol):
    """Where finished proofs go. ``put`` runs on the supervisor thread."""

    def put(self, task_id: str, proof: bytes) -> None: ...

    def get(self, task_id: str) -> bytes | None: ...


@dataclass
class Metrics:
    """Counters since launch; read a copy with ``ServiceHandle.metrics()``."""

    dispatched: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    workers_started: int = 0
    workers_retired: int = 0
    workers_crashed: int = 0
    workers_hung: int = 0
    deadlines_exceeded: int = 0
    memory_kills: int = 0
    silent_but_busy: int = 0
    start_failures: int = 0
    frames_dropped: int = 0
    stale_replies: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Supervisor:
    """Runs the pools; every public method is safe to call from any thread."""

    def __init__(
        self,
        config: ServiceConfig,
        provers: Mapping[str, Mapping[str, Any]],
        store: TaskStore,
        proof_stores: Mapping[str, ProofStore],
        clock: Clock,
        rng: Rng,
        on_finished: Callable[[str], None],
    ) -> None:
        self._config = config
        self._store = store
        self._proof_stores = proof_stores
        self._clock = clock
        self._rng = rng
        self._on_finished = on_finished
        self.metrics = Metrics()
        self._pools = {
            backend: Pool(backend, size, provers[backend])
            for backend, size in config.pools.items()
        }
        self._workers: dict[int, WorkerProcess] = {}
        self._by_sentinel: dict[int, WorkerProcess] = {}
        self._retry_heap: list[tuple[float, str]] = []
        self._attempt_ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stop_at_s: float | None = None
        self._thread: threading.Thread | None = None
        self.worker_pids: dict[str, tuple[int, ...]] = {b: () for b in config.pools}
        self.stopped = threading.Event()

    # -- host-thread API ---------------------------------------------------------

    def start(self) -> None:
        self._ipc_dir = _private_ipc_dir()
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        self._inbox = self._context.socket(zmq.PULL)
        self._inbox.setsockopt(zmq.LINGER, 0)
        self._inbox.setsockopt(zmq.MAXMSGSIZE, self._config.max_message_bytes)
        self._inbox_endpoint = f"ipc://{self._ipc_dir / 'up'}"
        self._inbox.bind(self._inbox_endpoint)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = zmq.Poller()
        self._poller.register(self._inbox, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._thread = threading.Thread(
            target=self._run, name="paas-supervisor", daemon=True
        )
        self._thread.start()
        logger.info("Supervisor started with pools {}", dict(self._config.pools))

    def post(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the supervisor thread soon."""
        self._commands.put(command)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already; the loop drains the queue
        except OSError:
            pass  # the loop has stopped and closed the pipe

    def enqueue(self, task_id: str, backend: str) -> None:
        self.post(lambda: self._queue_task(task_id, backend))

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop after running attempts finish, waiting at most ``drain_s``.

        Returns once every worker is gone. Calling again with a shorter drain
        (a second Ctrl-C) cuts the wait short.
        """
        thread = self._thread
        if thread is None:
            return
        self.post(lambda: self._begin_stop(drain_s))
        thread.join()

    def _begin_stop(self, drain_s: float) -> None:
        stop_at_s = self._clock.monotonic() + drain_s
        if self._stop_at_s is None:
            busy = sum(w.state is WorkerState.BUSY for w in self._workers.values())
            logger.info("Draining: {} attempts running, up to {:.1f} s", busy, drain_s)
        self._stop_at_s = min(stop_at_s, self._stop_at_s or stop_at_s)

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._drained():
                self._step()
        except BaseException:  # noqa: BLE001 - logged as CRITICAL, then cleaned up
            logger.opt(exception=True).critical(
                "Supervisor loop crashed; stopping all workers. Tasks in flight stay "
                "in their current status in the task store."
            )
        finally:
            self._close_everything()
            self.stopped.set()

    def _step(self) -> None:
        ready = dict(self._poller.poll(self._poll_timeout_ms()))
        if self._wake_r in ready:
            _drain_pipe(self._wake_r)
        with self._store.batch():
            self._run_commands()
            if self._inbox in ready:
                self._drain_inbox()
            self._reap_dead(ready)
            self._check_workers()
            self._requeue_due_retries()
            if self._stop_at_s is None:
                self._spawn_missing()
                self._dispatch()

    def _drained(self) -> bool:
        if self._stop_at_s is None:
            return False
        busy = any(w.state is WorkerState.BUSY for w in self._workers.values())
        return not busy or self._clock.monotonic() >= self._stop_at_s

    def _poll_timeout_ms(self) -> int:
        now_s = self._clock.monotonic()
        wake_at_s = now_s + self._config.heartbeat.interval_s
        if self._retry_heap:
            wake_at_s = min(wake_at_s, self._retry_heap[0][0])
        if self._stop_at_s is not None:
            wake_at_s = min(wake_at_s, self._stop_at_s)
        for pool in self._pools.values():
            if len(pool.workers) < pool.size:
                wake_at_s = min(wake_at_s, pool.next_spawn_at_s)
        for worker in self._workers.values():
            if worker.attempt_deadline_at_s is not None:
                wake_at_s = min(wake_at_s, worker.attempt_deadline_at_s)
        return max(0, int((wake_at_s - now_s) * 1000) + 1)

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _queue_task(self, task_id: str, backend: str) -> None:
        pool = self._pools[backend]
        if pool.unavailable is not None:
            self._fail_queued(task_id, "PoolUnavailable", pool.unavailable)
        else:
            pool.queue.append(task_id)

    # -- inbox -------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        for _ in range(_INBOX_BATCH):
            try:
                frame = self._inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = wire.supervisor_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                self.metrics.frames_dropped += 1
                logger.warning(
                    "Dropped a malformed frame of {} bytes: {}", len(frame), exc
                )
                continue
            self._handle(message)

    def _handle(self, message: wire.ToSupervisor) -> None:
        worker = self._workers.get(message.worker_id)
        pid = getattr(message, "pid", None)
        if worker is None or (pid is not None and pid != worker.pid):
            self.metrics.frames_dropped += 1
            logger.warning(
                "Dropped a {} from unknown worker {} (pid {})",
                type(message).__name__,
                message.worker_id,
                pid,
            )
            return
        worker.last_seen_at_s = self._clock.monotonic()
        if isinstance(message, wire.Heartbeat):
            worker.cpu_s_at_last_seen = worker.cpu_time_s() or 0.0
        elif isinstance(message, wire.Ready):
            self._on_ready(worker)
        elif isinstance(message, wire.StartFailed):
            worker.start_error = f"{message.error_type}: {message.message}"
            logger.bind(backend=worker.backend, worker=worker.worker_id).error(
                "Worker setup failed: {}\n{}", worker.start_error, message.traceback
            )
        elif isinstance(message, wire.Result):
            self._on_result(worker, message)
        else:
            self._on_failure(worker, message)

    def _on_ready(self, worker: WorkerProcess) -> None:
        if worker.state is not WorkerState.STARTING:
            logger.warning("Worker {} sent Ready twice; ignored", worker.worker_id)
            return
        worker.move_to(WorkerState.IDLE)
        pool = self._pools[worker.backend]
        pool.idle.append(worker)
        pool.start_failures = 0
        pool.unavailable = None
        logger.bind(backend=worker.backend, worker=worker.worker_id).info(
            "Worker pid {} ready", worker.pid
        )

    def _release(self, worker: WorkerProcess, attempt_id: int) -> bool:
        """Take back the worker's credit if ``attempt_id`` is the one it holds."""
        if worker.state is not WorkerState.BUSY or worker.attempt_id != attempt_id:
            self.metrics.stale_replies += 1
            logger.warning(
                "Dropped a reply for attempt {} from worker {}, which holds attempt {}",
                attempt_id,
                worker.worker_id,
                worker.attempt_id,
            )
            return False
        worker.task_id = worker.attempt_id = None
        worker.attempt_deadline_at_s = worker.attempt_deadline_s = None
        worker.tasks_done += 1
        limit = self._config.max_tasks_per_worker
        if limit is not None and worker.tasks_done >= limit:
            self._retire(worker)
        else:
            worker.move_to(WorkerState.IDLE)
            self._pools[worker.backend].idle.append(worker)
        return True

    def _retire(self, worker: WorkerProcess) -> None:
        """Ask an idle worker to exit; its sentinel then frees the pool slot."""
        worker.move_to(WorkerState.RETIRING)
        try:
            worker.socket.send(wire.encode(wire.Shutdown()), zmq.NOBLOCK)
        except zmq.ZMQError:
            worker.kill()
        logger.bind(backend=worker.backend, worker=worker.worker_id).debug(
            "Recycling worker pid {} after {} tasks", worker.pid, worker.tasks_done
        )

    def _on_result(self, worker: WorkerProcess, result: wire.Result) -> None:
        if not self._release(worker, result.attempt_id):
            return
        record = self._store.get(result.task_id)
        if not self._is_current(
            record.status, record.current_attempt, result.attempt_id
        ):
            return
        try:
            self._proof_stores[record.program_key].put(result.task_id, result.proof)
        except Exception as exc:  # noqa: BLE001 - any store failure fails the attempt
            logger.bind(task=result.task_id).opt(exception=True).error(
                "Proof store failed"
            )
            self._attempt_failed(
                result.task_id,
                result.attempt_id,
                type(exc).__name__,
                f"proof store put() failed: {exc}",
                "",
                permanent=False,
            )
            return
        self._store.transition(
            result.task_id,
            TaskStatus.PROVING,
            TaskStatus.COMPLETED,
            current_attempt=None,
            input=None,
            prove_time_s=result.prove_time_s,
            proof_size=len(result.proof),
            updated_at=self._clock.time(),
        )
        self.metrics.completed += 1
        logger.bind(
            task=result.task_id, backend=worker.backend, attempt=result.attempt_id
        ).info(
            "Task completed: {} byte proof in {:.3f} s",
            len(result.proof),
            result.prove_time_s,
        )
        self._on_finished(result.task_id)

    def _on_failure(self, worker: WorkerProcess, failure: wire.Failure) -> None:
        if self._release(worker, failure.attempt_id):
            self._attempt_failed(
                failure.task_id,
                failure.attempt_id,
                failure.error_type,
                failure.message,
                failure.traceback,
                failure.permanent,
            )

    def _is_current(
        self, status: TaskStatus, current: int | None, attempt_id: int
    ) -> bool:
        if status is TaskStatus.PROVING and current == attempt_id:
            return True
        self.metrics.stale_replies += 1
        logger.warning(
            "Dropped a reply for stale attempt {} (task is {})", attempt_id, status
        )
        return False

    # -- failures and retries ----------------------------------------------------

    def _attempt_failed(
        self,
        task_id: str,
        attempt_id: int,
        error_type: str,
        message: str,
        detail: str,
        permanent: bool,
    ) -> None:
        record = self._store.get(task_id)
        if not self._is_current(record.status, record.current_attempt, attempt_id):
            return
        error = {
            "last_error_type": error_type,
            "last_error_message": message,
            "last_error_detail": detail,
            "current_attempt": None,
            "updated_at": self._clock.time(),
        }
        log = logger.bind(task=task_id, backend=record.backend, attempt=attempt_id)
        if permanent or not should_retry(self._config.retry, record.retries):
            self._store.transition(
                task_id,
                TaskStatus.PROVING,
                TaskStatus.PERMANENT_FAILURE,
                input=None,
                **error,
            )
            self.metrics.failed += 1
            log.error(
                "Task failed permanently: {}: {}\n{}", error_type, message, detail
            )
            self._on_finished(task_id)
            return

        delay_s = backoff_delay_s(self._config.retry, record.retries, self._rng)
        self._store.transition(
            task_id,
            TaskStatus.PROVING,
            TaskStatus.TRANSIENT_FAILURE,
            retries=record.retries + 1,
            retry_after=self._clock.time() + delay_s,
            **error,
        )
        heapq.heappush(self._retry_heap, (self._clock.monotonic() + delay_s, task_id))
        self.metrics.retries += 1
        log.warning(
            "Attempt failed ({}: {}); retry {} of {} in {:.3f} s",
            error_type,
            message,
            record.retries + 1,
            self._config.retry.max_retries,
            delay_s,
        )

    def _requeue_due_retries(self) -> None:
        now_s = self._clock.monotonic()
        while self._retry_heap and self._retry_heap[0][0] <= now_s:
            _, task_id = heapq.heappop(self._retry_heap)
            record = self._store.transition(
                task_id,
                TaskStatus.TRANSIENT_FAILURE,
                TaskStatus.QUEUED,
                retry_after=None,
                updated_at=self._clock.time(),
            )
            self._queue_task(task_id, record.backend)

    def _fail_queued(self, task_id: str, error_type: str, message: str) -> None:
        self._store.transition(
            task_id,
            TaskStatus.QUEUED,
            TaskStatus.PERMANENT_FAILURE,
            input=None,
            last_error_type=error_type,
            last_error_message=message,
            updated_at=self._clock.time(),
        )
        self.metrics.failed += 1
        logger.bind(task=task_id).error("Task failed permanently: {}", message)
        self._on_finished(task_id)

    # -- worker health -----------------------------------------------------------

    def _reap_dead(self, ready: Mapping[Any, int]) -> None:
        for sentinel in [fd for fd in ready if fd in self._by_sentinel]:
            worker = self._by_sentinel[sentinel]
            code = worker.exitcode()
            if code is None:
                continue
            if worker.state is WorkerState.RETIRING and code == 0:
                self._forget(worker)
                worker.close()
                self.metrics.workers_retired += 1
                continue
            self._worker_lost(worker, WorkerCrashed(worker.pid, code, worker.backend))

    def _check_workers(self) -> None:
        now_s = self._clock.monotonic()
        for worker in list(self._workers.values()):
            if worker.state is WorkerState.RETIRING:
                continue
            busy_before = worker.silent_but_busy
            error = diagnose(worker, now_s, self._config)
            self.metrics.silent_but_busy += worker.silent_but_busy - busy_before
            if error is not None:
                worker.kill()
                self._worker_lost(worker, error)

    def _worker_lost(self, worker: WorkerProcess, error: WorkerLost) -> None:
        was_starting = worker.state is WorkerState.STARTING
        task_id, attempt_id = worker.task_id, worker.attempt_id
        self._forget(worker)
        worker.close()
        self._count_loss(worker, error)

        log = logger.bind(backend=worker.backend, worker=worker.worker_id)
        if was_starting:
            self._start_failed(worker, error)
        else:
            log.warning("Worker lost: {}", error)
        if task_id is not None and attempt_id is not None:
            self._attempt_failed(
                task_id,
                attempt_id,
                type(error).__name__,
                str(error),
                "",
                permanent=False,
            )

    def _count_loss(self, worker: WorkerProcess, error: WorkerLost) -> None:
        if isinstance(error, WorkerHung):
            self.metrics.workers_hung += 1
        elif isinstance(error, DeadlineExceeded):
            self.metrics.deadlines_exceeded += 1
        elif isinstance(error, MemoryLimitExceeded):
            self.metrics.memory_kills += 1
        else:
            self.metrics.workers_crashed += 1

    def _start_failed(self, worker: WorkerProcess, error: WorkerLost) -> None:
        """Back off before the next start; give up on the queue after too many."""
        pool = self._pools[worker.backend]
        self.metrics.start_failures += 1
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
            pool.unavailable = str(
                PoolUnavailable(pool.backend, pool.start_failures, reason)
            )
            while pool.queue:
                self._fail_queued(
                    pool.queue.popleft(), "PoolUnavailable", pool.unavailable
                )

    def _forget(self, worker: WorkerProcess) -> None:
        self._workers.pop(worker.worker_id, None)
        pool = self._pools[worker.backend]
        pool.workers.pop(worker.worker_id, None)
        if self._by_sentinel.pop(worker.sentinel, None) is not None:
            self._poller.unregister(worker.sentinel)
        self.worker_pids[pool.backend] = tuple(w.pid for w in pool.workers.values())

    def _spawn_missing(self) -> None:
        now_s = self._clock.monotonic()
        for pool in self._pools.values():
            while len(pool.workers) < pool.size and now_s >= pool.next_spawn_at_s:
                self._spawn(pool, now_s)

    def _spawn(self, pool: Pool, now_s: float) -> None:
        worker = WorkerProcess(
            worker_id=next(self._worker_ids),
            backend=pool.backend,
            provers=pool.provers,
            context=self._context,
            ipc_dir=self._ipc_dir,
            result_endpoint=self._inbox_endpoint,
            heartbeat_interval_s=self._config.heartbeat.interval_s,
            max_message_bytes=self._config.max_message_bytes,
            start_method=self._config.start_method,
            now_s=now_s,
        )
        pool.workers[worker.worker_id] = worker
        self._workers[worker.worker_id] = worker
        self._by_sentinel[worker.sentinel] = worker
        self._poller.register(worker.sentinel, zmq.POLLIN)
        self.worker_pids[pool.backend] = tuple(w.pid for w in pool.workers.values())
        self.metrics.workers_started += 1
        logger.bind(backend=pool.backend, worker=worker.worker_id).debug(
            "Started worker pid {}", worker.pid
        )

    # -- dispatch ----------------------------------------------------------------

    def _dispatch(self) -> None:
        for pool in self._pools.values():
            while pool.queue:
                worker = pool.take_idle()
                if worker is None:
                    break
                self._start_attempt(pool, worker, pool.queue.popleft())

    def _start_attempt(self, pool: Pool, worker: WorkerProcess, task_id: str) -> None:
        record = self._store.get(task_id)
        attempt_id = next(self._attempt_ids)
        assert record.input is not None, f"queued task {task_id} has no encoded input"
        frame = wire.encode(
            wire.Assignment(
                task_id=task_id,
                attempt_id=attempt_id,
                program_key=record.program_key,
                input=record.input,
            )
        )
        try:
            worker.socket.send(frame, zmq.NOBLOCK, copy=len(frame) < _BIG_FRAME_BYTES)
        except zmq.Again:
            # A worker holds at most one task, so a full pipe means its peer is gone:
            # the process is dying or stuck. Kill it; its sentinel leads to _reap_dead.
            logger.bind(backend=pool.backend, worker=worker.worker_id).warning(
                "Worker pid {} is not reading its task socket; killing it", worker.pid
            )
            pool.queue.appendleft(task_id)
            worker.kill()
            return
        self._store.transition(
            task_id,
            TaskStatus.QUEUED,
            TaskStatus.PROVING,
            attempts=record.attempts + 1,
            current_attempt=attempt_id,
            updated_at=self._clock.time(),
        )
        worker.move_to(WorkerState.BUSY)
        worker.task_id, worker.attempt_id = task_id, attempt_id
        if record.deadline_s is not None:
            worker.attempt_deadline_s = record.deadline_s
            worker.attempt_deadline_at_s = self._clock.monotonic() + record.deadline_s
        self.metrics.dispatched += 1
        logger.bind(task=task_id, backend=pool.backend, attempt=attempt_id).info(
            "Attempt {} started on worker {}", record.attempts + 1, worker.worker_id
        )

    # -- teardown ----------------------------------------------------------------

    def _close_everything(self) -> None:
        logger.info("Stopping supervisor...")
        workers = list(self._workers.values())
        for worker in workers:
            if worker.state in (WorkerState.STARTING, WorkerState.BUSY):
                worker.kill()  # a drain is over: what still runs is cut off now
                continue
            try:
                worker.socket.send(wire.encode(wire.Shutdown()), zmq.NOBLOCK)
            except zmq.ZMQError:
                worker.kill()  # its peer is gone already
        _wait_for_exit(workers, self._config.shutdown_grace_s, self._clock)
        for worker in workers:
            self._forget(worker)
            worker.close()
        self._inbox.close(linger=0)
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
        logger.info("Supervisor stopped.")


def _wait_for_exit(workers: list[WorkerProcess], grace_s: float, clock: Clock) -> None:
    deadline_s = clock.monotonic() + grace_s
    pending = {w.sentinel: w for w in workers if w.exitcode() is None}
    while pending:
        remaining_s = deadline_s - clock.monotonic()
        if remaining_s <= 0:
            return
        for sentinel in mp_connection.wait(list(pending), timeout=remaining_s):
            pending.pop(sentinel)


def _private_ipc_dir() -> Path:
    """A 0700 temp dir with a path short enough for ipc:// socket names."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_IPC_DIR_CHARS:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="paas-", dir=base))


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
