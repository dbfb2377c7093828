"""The supervisor: one thread in the host that owns every socket and worker.

    host threads            supervisor thread (one poll loop)          workers
    submit/fetch --post--> wake pipe
                           _run_commands: append the task to its pool queue
                           _dispatch: QUEUED -> PROVING --Assignment--> w<id> PULL
                           _drain_inbox <--Ready/Result/Failure/Heartbeat-- up PUSH
                             Result: store the proof, PROVING -> COMPLETED
                             Failure: TRANSIENT_FAILURE + backoff, or PERMANENT_FAILURE
                           fleet.reap_dead: sentinel readable -> requeue the attempt
                           fleet.check_health: hang, deadline, memory -> kill, requeue
                           _run_due_timers: retries, blocked rechecks, recovery scans
                           fleet.spawn_missing: refill pools, with start-up backoff

Host threads never touch a socket: they post callables to a queue and write one
byte to a pipe that the poll loop watches, next to the inbox socket and every
worker's process sentinel. A worker gets a task only after it reported Ready or
returned its previous attempt (its credit), so no task waits in the socket buffer
of a busy or dead worker. Each dispatch is an attempt with a fresh id; anything
that arrives for an attempt that is not the task's current one is dropped.

Each loop step writes the store inside one batch (one transaction for SQLite).
That is safe because nothing outside the process learns of a transition before
the step ends, except a worker receiving an assignment; if the host dies first,
recovery finds the task QUEUED and dispatches it again, and the worker died with
the host. A failed store write is logged and counted; recovery scans reconcile.

Stopping: a drain stops dispatching and spawning, lets running attempts finish
until the drain deadline, and leaves queued tasks queued in the store; then every
worker is told to exit, and killed if it does not within the grace period.
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import zmq
from loguru import logger

from paas import _messages as wire
from paas._clock import Clock
from paas._config import ServiceConfig
from paas._errors import IllegalTransition, StoreError, TaskNotFound, WorkerLost
from paas._fleet import Fleet
from paas._lifecycle import TaskStatus
from paas._metrics import Metrics
from paas._pool import Pool, WorkerProcess, WorkerState
from paas._proofs import ProofStore, checksum
from paas._retry import Rng, backoff_delay_s, should_retry
from paas._store import TaskRecord, TaskStore
from paas._timers import Timers
from paas._transport import SupervisorTransport

_INBOX_BATCH = 512
_BIG_FRAME_BYTES = 65536


class Supervisor:
    """Runs the pools; the methods that post to the loop are thread-safe."""

    def __init__(
        self,
        config: ServiceConfig,
        provers: Mapping[str, Mapping[str, Any]],
        store: TaskStore,
        proof_stores: Mapping[str, ProofStore],
        clock: Clock,
        rng: Rng,
        on_finished: Callable[[str], None],
        on_pending: Callable[[TaskRecord], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self._config = config
        self._store = store
        self._proof_stores = proof_stores
        self._clock = clock
        self._rng = rng
        self._on_finished = on_finished
        self._on_pending = on_pending
        self._on_stopped = on_stopped
        self.metrics = Metrics()
        self.fleet = Fleet(
            config,
            provers,
            clock,
            self.metrics,
            self._on_worker_lost,
            self._on_unavailable,
        )
        self._pools = self.fleet.pools
        self._finished_in_step: list[str] = []
        self._timers = Timers(clock)
        self._attempt_ids = itertools.count(1)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_pending = False
        self._stop_at_s: float | None = None
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()

    # -- host-thread API -----------------------------------------------------------

    def start(self) -> None:
        self._transport = SupervisorTransport(self._config.max_message_bytes)
        self.fleet.attach(self._transport)
        # Recover before the loop runs and before any submit, so that no scan can
        # race a fetch of a brand-new task at launch.
        with self._store.batch():
            self._recover(launch=True)
        self._thread = threading.Thread(
            target=self._run, name="paas-supervisor", daemon=True
        )
        self._thread.start()
        logger.info("Supervisor started with pools {}", dict(self._config.pools))

    @property
    def inbox_endpoint(self) -> str:
        return self._transport.inbox_endpoint

    def post(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the supervisor thread soon."""
        self._commands.put(command)
        # One wake-up per batch of commands: the loop clears the flag before it
        # drains the queue, so a command posted after that always writes again.
        if not self._wake_pending:
            self._wake_pending = True
            self._transport.wake()

    def accept_input(self, task_id: str, backend: str, raw: msgspec.Raw) -> None:
        """Record a fetched input (PENDING -> QUEUED) and queue the task."""
        self.post(lambda: self._accept_input(task_id, backend, raw))

    def _accept_input(self, task_id: str, backend: str, raw: msgspec.Raw) -> None:
        self._store.transition(
            task_id,
            TaskStatus.PENDING,
            TaskStatus.QUEUED,
            input=raw,
            updated_at=self._clock.time(),
        )
        self._queue_task(task_id, backend)

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
            logger.info(
                "Draining: {} attempts running, up to {:.1f} s",
                self.fleet.busy(),
                drain_s,
            )
        self._stop_at_s = min(stop_at_s, self._stop_at_s or stop_at_s)

    # -- the loop ------------------------------------------------------------------

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
            self._on_stopped()

    def _step(self) -> None:
        ready = self._transport.poll(self._poll_timeout_ms())
        self._wake_pending = False
        try:
            with self._store.batch():
                self._run_commands()
                if self._transport.inbox_ready(ready):
                    self._drain_inbox()
                self.fleet.reap_dead(ready)
                self.fleet.check_health()
                self._run_due_timers()
                if self._stop_at_s is None:
                    self.fleet.spawn_missing()
                    self._dispatch()
        except StoreError:
            self.metrics.store_errors += 1
            logger.opt(exception=True).error(
                "Task store write failed; the step's transitions were not saved and "
                "the next recovery scan reconciles them"
            )
        for task_id in self._finished_in_step:
            self._on_finished(task_id)
        self._finished_in_step.clear()

    def _drained(self) -> bool:
        if self._stop_at_s is None:
            return False
        return not self.fleet.busy() or self._clock.monotonic() >= self._stop_at_s

    def _poll_timeout_ms(self) -> int:
        now_s = self._clock.monotonic()
        candidates = [
            now_s + self._config.heartbeat.interval_s,
            self._stop_at_s,
            self.fleet.next_wake_s(),
            self._timers.next_due_s(),
        ]
        wake_at_s = min(t for t in candidates if t is not None)
        return max(0, int((wake_at_s - now_s) * 1000) + 1)

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._guarded(command)

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run one unit of work; a lost compare-and-set race must not stop the loop."""
        try:
            action()
        except (IllegalTransition, TaskNotFound) as exc:
            self.metrics.store_conflicts += 1
            logger.error("Skipped a step that lost a race with another writer: {}", exc)

    def _run_due_timers(self) -> None:
        for callback in self._timers.due():
            self._guarded(callback)

    def _queue_task(self, task_id: str, backend: str) -> None:
        pool = self._pools[backend]
        if pool.unavailable is not None:
            self._fail_queued(task_id, "PoolUnavailable", pool.unavailable)
        else:
            pool.push(task_id)

    def _finish(self, task_id: str) -> None:
        # Waiters hear of it after the step's batch ends: they read the store
        # while holding their condition, so notifying inside the batch (which
        # holds the store's lock) could deadlock. Waking them is harmless even if
        # the commit failed: they re-read the status.
        self._finished_in_step.append(task_id)

    # -- inbox ---------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        for message in self._transport.receive(_INBOX_BATCH):
            if isinstance(message, msgspec.DecodeError):
                self.metrics.frames_dropped += 1
                logger.warning("Dropped a malformed frame: {}", message)
            else:
                self._guarded(functools.partial(self._handle, message))

    def _handle(self, message: wire.ToSupervisor) -> None:
        worker = self.fleet.workers.get(message.worker_id)
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
        if isinstance(message, wire.Heartbeat | wire.Ready):
            # The CPU baseline for telling "busy in native code" from "stopped";
            # taken at Ready too, or the start-up's own CPU would count as busy.
            worker.cpu_s_at_last_seen = worker.cpu_time_s() or 0.0
        if isinstance(message, wire.Heartbeat):
            return
        if isinstance(message, wire.Ready):
            self.fleet.mark_ready(worker)
        elif isinstance(message, wire.StartFailed):
            worker.start_error = f"{message.error_type}: {message.message}"
            logger.bind(backend=worker.backend, worker=worker.worker_id).error(
                "Worker setup failed: {}\n{}", worker.start_error, message.traceback
            )
        elif self._release(worker, message.attempt_id):
            if isinstance(message, wire.Result):
                self._on_result(worker.backend, message)
            else:
                self._attempt_failed(
                    message.task_id,
                    message.attempt_id,
                    message.error_type,
                    message.message,
                    message.traceback,
                    message.permanent,
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
        self.fleet.make_idle(worker)
        return True

    def _on_result(self, backend: str, result: wire.Result) -> None:
        record = self._store.get(result.task_id)
        if not self._is_current(record, result.attempt_id):
            return
        try:
            self._proof_stores[record.program_key].put(result.task_id, result.proof)
        except Exception as exc:  # noqa: BLE001 - any store failure fails the attempt
            logger.bind(task=result.task_id).opt(exception=True).error(
                "Proof store failed"
            )
            message = f"proof store put() failed: {exc}"
            self._attempt_failed(
                result.task_id,
                result.attempt_id,
                type(exc).__name__,
                message,
                "",
                False,
            )
            return
        self._complete(record, result.proof, result.prove_time_s, TaskStatus.PROVING)
        logger.info(
            "Task completed: {} byte proof in {:.3f} s",
            len(result.proof),
            result.prove_time_s,
            task=result.task_id,
            backend=backend,
            attempt=result.attempt_id,
        )

    def _complete(
        self,
        record: TaskRecord,
        proof: bytes,
        prove_time_s: float | None,
        expected: TaskStatus,
    ) -> None:
        self._store.transition(
            record.task_id,
            expected,
            TaskStatus.COMPLETED,
            current_attempt=None,
            input=None,
            prove_time_s=prove_time_s,
            proof_size=len(proof),
            proof_sha256=checksum(proof),
            updated_at=self._clock.time(),
        )
        self.metrics.completed += 1
        self._finish(record.task_id)

    def _is_current(self, record: TaskRecord, attempt_id: int) -> bool:
        if record.status is TaskStatus.PROVING and record.current_attempt == attempt_id:
            return True
        self.metrics.stale_replies += 1
        logger.warning(
            "Dropped a reply for stale attempt {} (task is {})",
            attempt_id,
            record.status,
        )
        return False

    # -- failures and retries ------------------------------------------------------

    def _on_worker_lost(self, worker: WorkerProcess, error: WorkerLost) -> None:
        if worker.task_id is not None and worker.attempt_id is not None:
            self._attempt_failed(
                worker.task_id,
                worker.attempt_id,
                type(error).__name__,
                str(error),
                "",
                False,
            )

    def _on_unavailable(self, pool: Pool) -> None:
        while len(pool):
            self._fail_queued(pool.pop(), "PoolUnavailable", pool.unavailable or "")

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
        if not self._is_current(record, attempt_id):
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
            self._finish(task_id)
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
        self._timers.wait_then(delay_s, task_id, self._retry)
        self.metrics.retries += 1
        log.warning(
            "Attempt failed ({}: {}); retry {} of {} in {:.3f} s",
            error_type,
            message,
            record.retries + 1,
            self._config.retry.max_retries,
            delay_s,
        )

    def block(self, task_id: str, recheck_s: float) -> None:
        """Fetch a BLOCKED task's input again after ``recheck_s`` (thread-safe)."""
        self.post(
            lambda: self._timers.wait_then(recheck_s, task_id, self._recheck_blocked)
        )

    def _recheck_blocked(self, task_id: str) -> None:
        record = self._store.transition(
            task_id,
            TaskStatus.BLOCKED,
            TaskStatus.PENDING,
            updated_at=self._clock.time(),
        )
        self._on_pending(record)

    def _retry(self, task_id: str) -> None:
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
        self._finish(task_id)

    # -- recovery ------------------------------------------------------------------

    def _recover(self, launch: bool) -> None:
        """Adopt every unfinished task nobody in this process is handling.

        Runs at launch and then every ``recovery_interval_s``; the periodic scans
        repair what a failed store write or a lost message left behind. Tasks
        still PENDING belong to the input fetchers, so only launch adopts them.
        """
        handled = self._handled()
        adopted = 0
        # A task touched since the last scan has someone on it (a fetch thread, a
        # command still in the queue); only what sits still that long is adopted.
        quiet_since = self._clock.time() - self._config.recovery_interval_s
        for record in self._store.unfinished():
            recent = not launch and record.updated_at > quiet_since
            if record.task_id in handled or recent:
                continue
            if launch or record.status is not TaskStatus.PENDING:
                self._guarded(functools.partial(self._adopt, record))
                adopted += 1
        if adopted:
            logger.info("Recovery scan adopted {} unfinished tasks", adopted)
        self._timers.schedule(
            self._config.recovery_interval_s, lambda: self._recover(False)
        )

    def _handled(self) -> set[str]:
        handled = set(self._timers.waiting)
        for pool in self._pools.values():
            handled.update(pool.queued())
        handled.update(w.task_id for w in self.fleet.workers.values() if w.task_id)
        return handled

    def _adopt(self, record: TaskRecord) -> None:
        now_s = self._clock.time()
        if record.status in (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.PROVING):
            proof = self._proof_stores[record.program_key].get(record.task_id)
            if proof is not None:
                # The proof was stored before the host stopped: never prove it again.
                self._complete(record, proof, record.prove_time_s, record.status)
                self.metrics.recovered += 1
                return
        if record.status is TaskStatus.PENDING:
            self._on_pending(record)
        elif record.status is TaskStatus.QUEUED:
            self._queue_task(record.task_id, record.backend)
        elif record.status is TaskStatus.PROVING and record.current_attempt is not None:
            message = "the host stopped while this attempt was running"
            self._attempt_failed(
                record.task_id, record.current_attempt, "HostLost", message, "", False
            )
        elif record.status is TaskStatus.TRANSIENT_FAILURE:
            wait_s = max(0.0, (record.retry_after or now_s) - now_s)
            self._timers.wait_then(wait_s, record.task_id, self._retry)
        elif record.status is TaskStatus.BLOCKED:
            wait_s = max(0.0, (record.retry_after or now_s) - now_s)
            self._timers.wait_then(wait_s, record.task_id, self._recheck_blocked)

    # -- dispatch ------------------------------------------------------------------

    def _dispatch(self) -> None:
        for pool in self._pools.values():
            while len(pool):
                worker = pool.take_idle()
                if worker is None:
                    break
                self._start_attempt(pool, worker, pool.pop())

    def _start_attempt(self, pool: Pool, worker: WorkerProcess, task_id: str) -> None:
        record = self._store.get(task_id)
        if record.status is not TaskStatus.QUEUED or record.input is None:
            # Queued twice by a recovery scan racing a fetch: the first entry won.
            logger.bind(task=task_id).debug(
                "Skipped a stale queue entry ({})", record.status
            )
            pool.idle.appendleft(worker)
            return
        attempt_id = next(self._attempt_ids)
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
            # the process is dying or stuck. Kill it; its sentinel leads to reap_dead.
            logger.bind(backend=pool.backend, worker=worker.worker_id).warning(
                "Worker pid {} is not reading its task socket; killing it", worker.pid
            )
            pool.push(task_id, front=True)
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
        # Context as keyword arguments: loguru puts them in ``extra`` like bind()
        # would, at half the cost on this per-task path.
        logger.info(
            "Attempt {} started on worker {}",
            record.attempts + 1,
            worker.worker_id,
            task=task_id,
            backend=pool.backend,
            attempt=attempt_id,
        )

    # -- teardown ------------------------------------------------------------------

    def _close_everything(self) -> None:
        logger.info("Stopping supervisor...")
        self.fleet.close_all()
        self._transport.close()
        logger.info("Supervisor stopped.")
