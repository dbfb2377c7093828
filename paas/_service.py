"""The public face: register programs, launch the service, submit and wait.

    ProverServiceBuilder(config).register(...).launch() -> ServiceHandle

On submit the handle derives the task id, creates the task PENDING in the store
and hands the input fetch to a small thread pool; the fetched input is encoded
once (PENDING -> QUEUED) and the task id is posted to the supervisor thread,
which owns everything after that. Waiters block on one condition variable that
the supervisor notifies whenever a task reaches a terminal status.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import math
import random
import signal
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NewType, Protocol, Self

import dill
from loguru import logger

from paas._clock import Clock, SystemClock
from paas._config import ServiceConfig
from paas._errors import (
    ConfigError,
    EncodingError,
    InternalError,
    ServiceClosedError,
    TaskFailed,
    UnknownBackendError,
    UnknownProgramError,
)
from paas._lifecycle import TaskStatus
from paas._messages import encode_input
from paas._proofs import InMemoryProofStore
from paas._retry import Rng
from paas._store import InMemoryTaskStore, TaskRecord, TaskStore
from paas._supervisor import ProofStore, Supervisor

TaskId = NewType("TaskId", str)


class Program(Protocol):
    """What ``submit_task`` needs of a program: which registration it belongs to.

    A ``program_id`` attribute, if present, makes the task id deterministic, so
    submitting the same program to the same backend twice returns the same task.
    """

    routing_key: str


@dataclass(frozen=True)
class Prover:
    """A prover built from plain functions.

    ``prove`` runs in a worker process of ``backend``; ``setup``, if given, runs
    once in each worker before its first task (load keys, warm caches). Both must
    be picklable by dill: module-level functions always are.
    """

    backend: str
    prove: Callable[[Any], bytes]
    setup: Callable[[], None] | None = None


@dataclass(frozen=True)
class _Registration:
    program_key: str
    input_fetcher: Callable[[Any], Any]
    provers: Mapping[str, Any]
    proof_store: ProofStore
    deadline_s: float | None


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
        self._registrations: dict[str, _Registration] = {}

    def register(
        self,
        program_key: str,
        *,
        input_fetcher: Callable[[Any], Any],
        prover: Any,
        proof_store: ProofStore | None = None,
        deadline_s: float | None = None,
    ) -> Self:
        """Route programs whose ``routing_key`` is ``program_key`` to these handlers.

        ``prover`` is one prover or a list of provers with distinct backends; each
        has ``backend`` and ``prove(input) -> bytes``. An attempt running longer
        than ``deadline_s`` is killed and counts as a transient failure.
        """
        if not isinstance(program_key, str) or not program_key:
            raise ConfigError(
                f"program_key must be a non-empty str, got {program_key!r}"
            )
        if program_key in self._registrations:
            raise ConfigError(f"program_key {program_key!r} is registered already")
        if not callable(input_fetcher):
            raise ConfigError(f"input_fetcher must be callable, got {input_fetcher!r}")
        store = proof_store if proof_store is not None else InMemoryProofStore()
        if not (
            callable(getattr(store, "put", None))
            and callable(getattr(store, "get", None))
        ):
            raise ConfigError(f"proof_store must have put() and get(), got {store!r}")
        provers = _check_provers(program_key, prover)
        _check_deadline(deadline_s)
        self._registrations[program_key] = _Registration(
            program_key, input_fetcher, provers, store, deadline_s
        )
        return self

    def launch(self) -> ServiceHandle:
        """Start the pools and return the handle; use it as a context manager."""
        if not self._registrations:
            raise ConfigError("register at least one program before launch()")
        by_backend: dict[str, dict[str, Any]] = {}
        for reg in self._registrations.values():
            for backend, prover in reg.provers.items():
                if backend not in self._config.pools:
                    raise ConfigError(
                        f"program {reg.program_key!r} has a prover for backend "
                        f"{backend!r}, but config.pools has no pool for it"
                    )
                by_backend.setdefault(backend, {})[reg.program_key] = prover
        unused = sorted(set(self._config.pools) - set(by_backend))
        if unused:
            raise ConfigError(f"config.pools names backends no prover uses: {unused}")
        return ServiceHandle(
            self._config,
            dict(self._registrations),
            by_backend,
            self._store if self._store is not None else InMemoryTaskStore(),
            self._clock,
            self._rng,
        )


def _check_deadline(deadline_s: float | None) -> None:
    if deadline_s is None:
        return
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float):
        raise ConfigError(f"deadline_s must be a number or None, got {deadline_s!r}")
    if not math.isfinite(deadline_s) or deadline_s <= 0:
        raise ConfigError(f"deadline_s must be finite and > 0, got {deadline_s}")


def _check_provers(program_key: str, prover: Any) -> dict[str, Any]:
    candidates = list(prover) if isinstance(prover, list | tuple) else [prover]
    if not candidates:
        raise ConfigError(f"program {program_key!r}: prover list is empty")
    provers: dict[str, Any] = {}
    for candidate in candidates:
        backend = getattr(candidate, "backend", None)
        if not isinstance(backend, str) or not backend:
            raise ConfigError(
                f"program {program_key!r}: prover {candidate!r} needs a non-empty str "
                "'backend' attribute"
            )
        if not callable(getattr(candidate, "prove", None)):
            raise ConfigError(
                f"program {program_key!r}: prover {candidate!r} has no prove()"
            )
        if backend in provers:
            raise ConfigError(
                f"program {program_key!r}: two provers for backend {backend!r}"
            )
        try:
            dill.dumps(candidate)
        except Exception as exc:
            raise ConfigError(
                f"program {program_key!r}: prover for backend {backend!r} cannot be "
                f"shipped to a worker process (dill could not pickle it: {exc})"
            ) from exc
        provers[backend] = candidate
    return provers


class ServiceHandle:
    """A running service. Thread-safe; leaving the ``with`` block shuts it down."""

    def __init__(
        self,
        config: ServiceConfig,
        registrations: dict[str, _Registration],
        provers_by_backend: dict[str, dict[str, Any]],
        store: TaskStore,
        clock: Clock,
        rng: Rng,
    ) -> None:
        self._registrations = registrations
        self._store = store
        self._clock = clock
        self._finished = threading.Condition()
        self._closed = False
        self._close_lock = threading.Lock()
        self._entered = False
        self._fetchers = ThreadPoolExecutor(
            config.fetch_threads, thread_name_prefix="paas-fetch"
        )
        self._supervisor = Supervisor(
            config,
            provers_by_backend,
            store,
            {key: reg.proof_store for key, reg in registrations.items()},
            clock,
            rng,
            self._notify_finished,
        )
        self._supervisor.start()
        _live_handles.add(self)

    # -- context management -------------------------------------------------------

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
        self, program: Program, backend: str, *, deadline_s: float | None = None
    ) -> TaskId:
        """Create a task for ``program`` on ``backend``; returns at once.

        ``deadline_s`` overrides the program's deadline for this task.
        """
        self._check_open()
        registration = self._registration_for(program, backend)
        _check_deadline(deadline_s)
        task_id = _task_id_for(program, backend)
        now_s = self._clock.time()
        record, created = self._store.create(
            TaskRecord(
                task_id=task_id,
                program_key=registration.program_key,
                backend=backend,
                created_at=now_s,
                updated_at=now_s,
                deadline_s=deadline_s
                if deadline_s is not None
                else registration.deadline_s,
            )
        )
        if created:
            logger.bind(task=task_id, backend=backend).info(
                "Task submitted for program {}", registration.program_key
            )
            self._fetchers.submit(
                self._fetch_input, task_id, program, registration, backend
            )
        else:
            logger.bind(task=task_id).debug("Task exists already ({})", record.status)
        return TaskId(task_id)

    def _registration_for(self, program: Program, backend: str) -> _Registration:
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

    def _fetch_input(
        self, task_id: str, program: Program, registration: _Registration, backend: str
    ) -> None:
        try:
            raw = encode_input(registration.input_fetcher(program))
        except Exception as exc:  # noqa: BLE001 - any fetch failure fails the task, loudly
            kind = (
                "input cannot be encoded"
                if isinstance(exc, EncodingError)
                else ("input_fetcher raised")
            )
            logger.bind(task=task_id).opt(exception=True).error(
                "Task input failed: {}", kind
            )
            self._store.transition(
                task_id,
                TaskStatus.PENDING,
                TaskStatus.PERMANENT_FAILURE,
                last_error_type=type(exc).__name__,
                last_error_message=f"{kind}: {exc}",
                updated_at=self._clock.time(),
            )
            self._notify_finished(task_id)
            return
        self._store.transition(
            task_id,
            TaskStatus.PENDING,
            TaskStatus.QUEUED,
            input=raw,
            updated_at=self._clock.time(),
        )
        self._supervisor.enqueue(task_id, backend)

    # -- querying ------------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus:
        """The task's current status; :class:`TaskNotFound` for an unknown id."""
        return self._store.get(task_id).status

    def task(self, task_id: str) -> TaskRecord:
        """A snapshot of everything the store knows about the task."""
        return self._store.get(task_id)

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
        return self._store.query(
            status=status, program=program, backend=backend, limit=limit
        )

    def prune(self, older_than_s: float) -> int:
        """Forget finished tasks last updated more than ``older_than_s`` ago."""
        return self._store.prune(self._clock.time() - older_than_s)

    def metrics(self) -> dict[str, int]:
        """Counters since launch: dispatches, retries, crashes, dropped frames."""
        return self._supervisor.metrics.snapshot()

    def wait(self, task_id: str, timeout_s: float | None = None) -> bytes:
        """Block until the task ends; return its proof or raise :class:`TaskFailed`.

        Raises ``TimeoutError`` if ``timeout_s`` passes first, ``TaskNotFound`` at
        once for an unknown id, and :class:`ServiceClosedError` if the service stops.
        """
        deadline_s = None if timeout_s is None else self._clock.monotonic() + timeout_s
        with self._finished:
            while True:
                record = self._store.get(task_id)
                if record.status.is_terminal:
                    break
                if self._closed or self._supervisor.stopped.is_set():
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
                self._finished.wait(remaining_s)
        return self._proof_of(record)

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
        return proof

    def execute(
        self, program: Program, backend: str, timeout_s: float | None = None
    ) -> bytes:
        """Submit and wait: the proof, or the task's failure."""
        return self.wait(self.submit_task(program, backend), timeout_s)

    # -- shutdown --------------------------------------------------------------------

    def worker_pids(self) -> dict[str, tuple[int, ...]]:
        """Live worker pids per backend (for monitoring and fault injection)."""
        return dict(self._supervisor.worker_pids)

    def shutdown(self, *, drain: bool = False, timeout_s: float = 30.0) -> None:
        """Stop the service and release every resource; safe to call again.

        With ``drain``, no new attempt starts, running attempts get up to
        ``timeout_s`` to finish, and queued tasks stay queued in the store.
        Without it, running attempts are killed (a durable store requeues them on
        the next launch). A call without drain cuts a running drain short.
        """
        with self._close_lock:
            first = not self._closed
            self._closed = True
        if first:
            logger.info("Stopping service...")
        self._supervisor.stop(timeout_s if drain else 0.0)
        if not first:
            return
        self._fetchers.shutdown(wait=True, cancel_futures=True)
        with self._finished:
            self._finished.notify_all()
        _live_handles.discard(self)
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
        with self._finished:
            self._finished.notify_all()


def _task_id_for(program: Program, backend: str) -> str:
    program_id = getattr(program, "program_id", None)
    if program_id is None:
        return uuid.uuid4().hex
    key = f"{program.routing_key}\0{program_id}\0{backend}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


_live_handles: weakref.WeakSet[ServiceHandle] = weakref.WeakSet()


@atexit.register
def _shutdown_forgotten_services() -> None:
    # Registered after multiprocess's own exit hook, so it runs first: without it
    # that hook would wait forever for workers of a service nobody shut down.
    for handle in list(_live_handles):
        handle.shutdown()
