"""Input fetching: PENDING tasks get their input on a small pool of host threads.

    submit / recovery / blocked recheck --> start(record, program)
        fetcher thread: input_fetcher(program)
            value            -> encode once, supervisor: PENDING -> QUEUED
            InputNotReady    -> PENDING -> BLOCKED, recheck after blocked_recheck_s
            anything else    -> PENDING -> PERMANENT_FAILURE with the reason

A task is fetched by at most one thread at a time. After a host restart a PENDING
task needs its program object back: with a ``program_type`` registered, the
program was stored encoded at submit and is decoded here; otherwise the task
waits until the host submits the same program again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from loguru import logger

from paas._clock import Clock
from paas._config import ServiceConfig
from paas._errors import EncodingError, InputNotReady, InputRejected
from paas._lifecycle import TaskStatus
from paas._messages import encode_input
from paas._registry import Registration
from paas._store import TaskRecord, TaskStore


class InputFetcher:
    """Runs input fetchers off the supervisor thread and records what they said."""

    def __init__(
        self,
        config: ServiceConfig,
        registrations: Mapping[str, Registration],
        store: TaskStore,
        clock: Clock,
        on_fetched: Callable[[str, str, msgspec.Raw], None],
        on_blocked: Callable[[str, float], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self._config = config
        self._registrations = registrations
        self._store = store
        self._clock = clock
        self._on_fetched = on_fetched
        self._on_blocked = on_blocked
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        # A plain queue and threads of our own: a ThreadPoolExecutor future per
        # task cost more than the rest of submit_task put together.
        self._jobs: queue.SimpleQueue[tuple[TaskRecord, Any] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"paas-fetch-{n}", daemon=True)
            for n in range(config.fetch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def start(self, record: TaskRecord, program: Any | None = None) -> None:
        """Fetch the input of a PENDING task unless a fetch is already running."""
        if program is None:
            program = self._decode_program(record)
            if program is None:
                logger.bind(task=record.task_id).info(
                    "Task waits for its program to be submitted again"
                )
                return
        with self._lock:
            if record.task_id in self._in_flight:
                return
            self._in_flight.add(record.task_id)
        self._jobs.put((record, program))

    def shutdown(self) -> None:
        """Drop fetches not yet started; do not wait for running ones.

        A fetcher may block on slow I/O, and shutdown must not hang on it. A fetch
        that finishes later cannot write to the closed store, and the task stays
        PENDING for the next launch.
        """
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not self._closed:
                self._fetch(*job)

    def _decode_program(self, record: TaskRecord) -> Any | None:
        program_type = self._registrations[record.program_key].program_type
        if program_type is None or record.program is None:
            return None
        return msgspec.msgpack.decode(record.program, type=program_type)

    def _fetch(self, record: TaskRecord, program: Any) -> None:
        try:
            self._fetch_once(record, program)
        except BaseException:  # noqa: BLE001 - nothing may kill a fetch thread
            logger.bind(task=record.task_id).opt(exception=True).error(
                "Could not record the input fetch; the task stays PENDING"
            )
        finally:
            with self._lock:
                self._in_flight.discard(record.task_id)

    def _fetch_once(self, record: TaskRecord, program: Any) -> None:
        registration = self._registrations[record.program_key]
        try:
            raw = encode_input(registration.input_fetcher(program))
        except InputNotReady as exc:
            self._block(record, exc)
            return
        except BaseException as exc:  # noqa: BLE001 - even SystemExit fails the task
            self._fail(record.task_id, exc, _describe(exc))
            return
        # The supervisor records PENDING -> QUEUED inside its own batch, which is
        # far cheaper on a durable store than a commit from this thread.
        self._on_fetched(record.task_id, record.backend, raw)

    def _block(self, record: TaskRecord, exc: InputNotReady) -> None:
        checks = record.blocked_checks + 1
        if checks > self._config.max_blocked_rechecks:
            message = f"input still not ready after {record.blocked_checks} rechecks"
            self._fail(record.task_id, exc, f"{message}: {exc}")
            return
        recheck_s = self._config.blocked_recheck_s
        self._store.transition(
            record.task_id,
            TaskStatus.PENDING,
            TaskStatus.BLOCKED,
            blocked_checks=checks,
            retry_after=self._clock.time() + recheck_s,
            last_error_type=type(exc).__name__,
            last_error_message=str(exc),
            updated_at=self._clock.time(),
        )
        logger.bind(task=record.task_id).info(
            "Input not ready ({}); check {} again in {:.1f} s", exc, checks, recheck_s
        )
        self._on_blocked(record.task_id, recheck_s)

    def _fail(self, task_id: str, exc: BaseException, message: str) -> None:
        logger.bind(task=task_id).opt(exception=exc).error(
            "Task input failed: {}", message
        )
        self._store.transition(
            task_id,
            TaskStatus.PENDING,
            TaskStatus.PERMANENT_FAILURE,
            last_error_type=type(exc).__name__,
            last_error_message=message,
            updated_at=self._clock.time(),
        )
        self._on_failed(task_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EncodingError):
        return f"input cannot be encoded: {exc}"
    if isinstance(exc, InputRejected):
        return f"input rejected: {exc}"
    return f"input_fetcher raised: {exc}"
