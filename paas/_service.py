"""The public face: register programs, launch the service, submit and wait.

    ProverServiceBuilder(config).register(...).launch() -> ServiceHandle

On submit the handle derives the task id, creates the task PENDING in the store
and hands it to the input fetcher; the fetched input is encoded once (PENDING ->
QUEUED) and the task id is posted to the supervisor thread, which owns everything
after that. Waiters block on one condition variable that the supervisor notifies
whenever a task reaches a terminal status.
"""

from __future__ import annotations

import atexit
import itertools
import random
import signal
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, NewType, Self

import msgspec
from loguru import logger

from paas._clock import Clock, SystemClock
from paas._config import ServiceConfig, check_seconds
from paas._errors import (
    ConfigError,
    EncodingError,
    InternalError,
    ServiceClosedError,
    StoreError,
    TaskFailed,
    UnknownBackendError,
    UnknownProgramError,
    UsageError,
)
from paas._inputs import InputFetcher
from paas._lifecycle import TaskStatus
from paas._proofs import FileProofStore, InMemoryProofStore, ProofStore
from paas._registry import (
    Program,
    Registration,
    check_deadline,
    check_proof_store,
    check_provers,
    provers_by_backend,
    task_id_for,
)
from paas._retry import Rng
from paas._store import InMemoryTaskStore, TaskRecord, TaskStore
from paas._supervisor import Supervisor

TaskId = NewType("TaskId", str)


class ProverServiceBuilder:
    """Collects program registrations, then launches the service."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        store: TaskStore | None = None,
        clock: Clock | None = None,
        rng: Rng | None = None,
    ) -> None:
        if not isinstance(config, ServiceConfig):
            raise ConfigError(f"config must be a ServiceConfig, got {config!r}")
        self._config = config
        self._store = store
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._registrations: dict[str, Registration] = {}

    def register(
        self,
        program_key: str,
        *,
        input_fetcher: Callable[[Any], Any],
        prover: Any,
        proof_store: ProofStore | None = None,
        deadline_s: float | None = None,
        program_type: type | None = None,
    ) -> Self:
        """Route programs whose ``routing_key`` is ``program_key`` to these handlers.

        ``prover`` is one prover or a list of provers with distinct backends; each
        has ``backend`` and ``prove(input) -> bytes``. An attempt running longer
        than ``deadline_s`` is killed and counts as a transient failure. With
        ``program_type`` (a dataclass or msgspec Struct), programs are stored with
        their task, so a task still PENDING when the host died resumes by itself.
        """
        if not isinstance(program_key, str) or not program_key:
            raise ConfigError(
                f"program_key must be a non-empty str, got {program_key!r}"
            )
        if program_key in self._registrations:
            raise ConfigError(f"program_key {program_key!r} is registered already")
        if not callable(input_fetcher):
            raise ConfigError(f"input_fetcher must be callable, got {input_fetcher!r}")
        if program_type is not None and not isinstance(program_type, type):
            raise ConfigError(f"program_type must be a class, got {program_type!r}")
        store = (
            proof_store
            if proof_store is not None
            else self._default_proofs(program_key)
        )
        check_proof_store(store)
        check_deadline(deadline_s)
        provers = check_provers(program_key, prover)
        self._registrations[program_key] = Registration(
            program_key, input_fetcher, provers, store, deadline_s, program_type
        )
        return self

    def _default_proofs(self, program_key: str) -> ProofStore:
        if self._config.state_dir is None:
            return InMemoryProofStore()
        return FileProofStore(Path(self._config.state_dir) / "proofs" / program_key)

    def launch(self) -> ServiceHandle:
        """Start the pools and return the handle; use it as a context manager."""
        if not self._registrations:
            raise ConfigError("register at least one program before launch()")
        grouped = provers_by_backend(self._registrations, self._config.pools)
        store, owned = self._store, False
        if store is None:
            store, owned = _default_store(self._config), True
        return ServiceHandle(
            self._config,
            dict(self._registrations),
            grouped,
            store,
            self._clock,
            self._rng,
            owns_store=owned,
        )


def _default_store(config: ServiceConfig) -> TaskStore:
    if config.state_dir is None:
        return InMemoryTaskStore()
    from paas._sqlite_store import SQLiteTaskStore

    return SQLiteTaskStore(Path(config.state_dir) / "tasks.db")


class ServiceHandle:
    """A running service. Thread-safe; leaving the ``with`` block shuts it down."""

    def __init__(
        self,
        config: ServiceConfig,
        registrations: dict[str, Registration],
        grouped_provers: dict[str, dict[str, Any]],
        store: TaskStore,
        clock: Clock,
        rng: Rng,
        *,
        owns_store: bool = False,
    ) -> None:
        self._registrations = registrations
        self._store = store
        self._owns_store = owns_store
        self._clock = clock
        self._waiters = _Waiters()
        self._closed = False
        self._close_lock = threading.Lock()
        self._released = threading.Event()
        self._entered = False
        self._inputs = InputFetcher(
            config,
            registrations,
            store,
            clock,
            on_fetched=lambda task_id, backend, raw: self._supervisor.accept_input(
                task_id, backend, raw
            ),
            on_blocked=lambda task_id, delay_s: self._supervisor.block(
                task_id, delay_s
            ),
            on_failed=self._notify_finished,
        )
        self._supervisor = Supervisor(
            config,
            grouped_provers,
            store,
            {key: reg.proof_store for key, reg in registrations.items()},
            clock,
            rng,
            on_finished=self._notify_finished,
            on_pending=self._inputs.start,
            on_stopped=self._waiters.wake_all,
        )
        self._supervisor.start()
        _live_handles.add(self)

    # -- context management --------------------------------------------------------

    def __enter__(self) -> Self:
        if self._closed:
            raise ServiceClosedError("cannot enter a service handle that was shut down")
        if self._entered:
            raise ServiceClosedError("this service handle is already in a with block")
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- submitting ----------------------------------------------------------------

    def submit_task(
        self,
        program: Program,
        backend: str,
        *,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> TaskId:
        """Create a task for ``program`` on ``backend``; returns at once.

        The task id comes from ``idempotency_key`` if given, else from the
        program's routing key, ``program_id`` and the backend: submitting the same
        program again returns the same task and never proves it twice.
        ``deadline_s`` overrides the program's deadline for this task.
        """
        self._check_open()
        return self._submit(program, backend, deadline_s, idempotency_key)

    def submit_many(
        self,
        programs: Iterable[Program],
        backend: str,
        *,
        deadline_s: float | None = None,
    ) -> list[TaskId]:
        """``submit_task`` for each program, stored in one transaction.

        With a durable store this is much cheaper than one call per program.
        """
        self._check_open()
        with self._store.batch():
            return [self._submit(p, backend, deadline_s, None) for p in programs]

    def _submit(
        self,
        program: Program,
        backend: str,
        deadline_s: float | None,
        idempotency_key: str | None,
    ) -> TaskId:
        registration = self._registration_for(program, backend)
        check_deadline(deadline_s)
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise ValueError(
                "idempotency_key must be a non-empty str or None, "
                f"got {idempotency_key!r}"
            )
        task_id = task_id_for(program, backend, idempotency_key)
        now_s = self._clock.time()
        record, created = self._store.create(
            TaskRecord(
                task_id=task_id,
                program_key=registration.program_key,
                backend=backend,
                created_at=now_s,
                updated_at=now_s,
                deadline_s=registration.deadline_s
                if deadline_s is None
                else deadline_s,
                program=_encode_program(registration, program),
            )
        )
        if created:
            logger.info(
                "Task submitted for program {}",
                registration.program_key,
                task=task_id,
                backend=backend,
            )
        if record.status is TaskStatus.PENDING:
            self._inputs.start(record, program)
        return TaskId(task_id)

    def _registration_for(self, program: Program, backend: str) -> Registration:
        key = getattr(program, "routing_key", None)
        registration = self._registrations.get(key) if isinstance(key, str) else None
        if registration is None:
            raise UnknownProgramError(
                f"no program registered for routing_key {key!r}; "
                f"registered: {sorted(self._registrations)}"
            )
        if backend not in registration.provers:
            raise UnknownBackendError(
                f"program {key!r} has no prover for backend {backend!r}; "
                f"its backends: {sorted(registration.provers)}"
            )
        return registration

    # -- querying ------------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus:
        """The task's current status; :class:`TaskNotFound` for an unknown id."""
        return self._get(task_id).status

    def task(self, task_id: str) -> TaskRecord:
        """A snapshot of everything the store knows about the task."""
        return self._get(task_id)

    def _get(self, task_id: str) -> TaskRecord:
        try:
            return self._store.get(task_id)
        except StoreError as exc:
            if self._closed:
                raise ServiceClosedError(
                    f"the service was shut down and its task store closed; open "
                    f"SQLiteTaskStore(..., read_only=True) to read task {task_id}"
                ) from exc
            raise

    def counts(self) -> dict[TaskStatus, int]:
        """Number of tasks in each status, over all backends."""
        totals = dict.fromkeys(TaskStatus, 0)
        for (_, status), count in self._store.counts().items():
            totals[status] += count
        return totals

    def tasks(
        self,
        *,
        status: TaskStatus | None = None,
        program: str | None = None,
        backend: str | None = None,
        limit: int | None = 100,
    ) -> list[TaskRecord]:
        """Snapshots of matching tasks, most recently updated first."""
        if status is not None and not isinstance(status, TaskStatus):
            status = _parse_status(status)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int)
        ):
            raise ValueError(f"limit must be an int or None, got {limit!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return self._store.query(
            status=status, program=program, backend=backend, limit=limit
        )

    def prune(self, older_than_s: float) -> int:
        """Forget finished tasks last updated more than ``older_than_s`` ago."""
        check_seconds("older_than_s", older_than_s, allow_zero=True, error=ValueError)
        return self._store.prune(self._clock.time() - older_than_s)

    def metrics(self) -> dict[str, int]:
        """Counters since launch: dispatches, retries, crashes, dropped frames."""
        return self._supervisor.metrics.snapshot()

    def wait(self, task_id: str, timeout_s: float | None = None) -> bytes:
        """Block until the task ends; return its proof or raise :class:`TaskFailed`.

        Raises ``TimeoutError`` if ``timeout_s`` passes first, ``TaskNotFound`` at
        once for an unknown id, and :class:`ServiceClosedError` if the service stops.
        """
        check_seconds("timeout_s", timeout_s, allow_zero=True, error=ValueError)
        deadline_s = None if timeout_s is None else self._clock.monotonic() + timeout_s
        while True:
            # Listen first, then look: a task that ends in between still wakes us.
            ended = self._waiters.listen(task_id)
            try:
                record = self._get(task_id)
                if record.status.is_terminal:
                    return self._proof_of(record)
                # Not `self._closed`: during a drain the task may still finish.
                if self._supervisor.stopped.is_set():
                    raise ServiceClosedError(
                        f"service stopped while task {task_id} was {record.status}"
                    )
                remaining_s = (
                    None if deadline_s is None else deadline_s - self._clock.monotonic()
                )
                if remaining_s is not None and remaining_s <= 0:
                    raise TimeoutError(
                        f"task {task_id} is still {record.status} after {timeout_s} s"
                    )
                ended.wait(remaining_s)
            finally:
                self._waiters.forget(task_id, ended)

    def _proof_of(self, record: TaskRecord) -> bytes:
        if record.status is TaskStatus.PERMANENT_FAILURE:
            raise TaskFailed(
                record.task_id,
                record.last_error_type or "Error",
                record.last_error_message or "",
                record.attempts,
                record.last_error_detail or "",
            )
        proof = self._registrations[record.program_key].proof_store.get(record.task_id)
        if proof is None:
            raise InternalError(
                f"task {record.task_id} is COMPLETED but its proof is missing"
            )
        if not isinstance(proof, bytes):
            raise UsageError(
                f"proof_store.get({record.task_id!r}) returned "
                f"{type(proof).__name__}, expected bytes"
            )
        return proof

    def execute(
        self, program: Program, backend: str, timeout_s: float | None = None
    ) -> bytes:
        """Submit and wait: the proof, or the task's failure."""
        return self.wait(self.submit_task(program, backend), timeout_s)

    # -- shutdown ------------------------------------------------------------------

    def worker_pids(self) -> dict[str, tuple[int, ...]]:
        """Live worker pids per backend (for monitoring and fault injection)."""
        return dict(self._supervisor.fleet.worker_pids)

    def shutdown(self, *, drain: bool = False, timeout_s: float = 30.0) -> None:
        """Stop the service and release every resource; safe to call again.

        With ``drain``, no new attempt starts, running attempts get up to
        ``timeout_s`` to finish, and queued tasks stay queued in the store.
        Without it, running attempts are killed (a durable store requeues them on
        the next launch). A call without drain cuts a running drain short. Every
        call returns only once the whole service is released, whichever call (or
        signal handler) started the shutdown.
        """
        with self._close_lock:
            first = not self._closed
            self._closed = True
        if first:
            logger.info("Stopping service...")
        self._supervisor.stop(timeout_s if drain else 0.0)
        if not first:
            self._released.wait()
            return
        try:
            self._inputs.shutdown()
            if self._owns_store:
                self._store.close()
        finally:
            self._waiters.wake_all()
            _live_handles.discard(self)
            self._released.set()
        logger.info("Service stopped.")

    def handle_signals(self, drain_timeout_s: float = 30.0) -> None:
        """Make SIGINT and SIGTERM drain the service; a second signal stops at once.

        Call from the main thread. Workers sit in their own process group, so a
        Ctrl-C at the terminal never reaches a running proof.
        """
        hits = itertools.count()

        def on_signal(signum: int, frame: object) -> None:
            drain = next(hits) == 0
            logger.warning(
                "Got {}: {}",
                signal.Signals(signum).name,
                "draining" if drain else "stopping",
            )
            threading.Thread(
                target=self.shutdown,
                kwargs={"drain": drain, "timeout_s": drain_timeout_s},
                name="paas-signal-shutdown",
                daemon=True,
            ).start()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def _check_open(self) -> None:
        if self._closed or self._supervisor.stopped.is_set():
            raise ServiceClosedError("the service was shut down; launch a new one")

    def _notify_finished(self, task_id: str) -> None:
        self._waiters.wake(task_id)


def _parse_status(value: object) -> TaskStatus:
    """Accept a status's name or value ("COMPLETED", "completed") as well."""
    if isinstance(value, str):
        for status in TaskStatus:
            if value in (status.name, status.value):
                return status
    names = ", ".join(s.name for s in TaskStatus)
    raise ValueError(f"status must be a TaskStatus ({names}), got {value!r}")


class _Waiters:
    """One event per waiting call, woken only when its own task ends.

    Waking every waiter on every completion would make each waiting thread
    fight the supervisor for the GIL once per task of the whole batch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = {}

    def listen(self, task_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events.setdefault(task_id, set()).add(event)
        return event

    def forget(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get(task_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[task_id]

    def wake(self, task_id: str) -> None:
        with self._lock:
            events = list(self._events.get(task_id, ()))
        for event in events:
            event.set()

    def wake_all(self) -> None:
        with self._lock:
            events = [e for group in self._events.values() for e in group]
        for event in events:
            event.set()


def _encode_program(registration: Registration, program: Program) -> msgspec.Raw | None:
    if registration.program_type is None:
        return None
    if not isinstance(program, registration.program_type):
        raise UnknownProgramError(
            f"program {registration.program_key!r} expects "
            f"{registration.program_type.__name__}, got {type(program).__name__}"
        )
    try:
        return msgspec.Raw(msgspec.msgpack.encode(program))
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"program cannot be stored: {exc}") from exc


_live_handles: weakref.WeakSet[ServiceHandle] = weakref.WeakSet()


@atexit.register
def _shutdown_forgotten_services() -> None:
    # Registered after multiprocess's own exit hook, so it runs first: without it
    # that hook would wait forever for workers of a service nobody shut down.
    for handle in list(_live_handles):
        handle.shutdown()
