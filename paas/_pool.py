"""Worker processes of one backend, as the supervisor sees them.

Each :class:`WorkerProcess` is a guard around one OS process and the PUSH socket
the supervisor binds for it: ``close()`` kills the process group if it is still
alive, reaps it, closes the socket and removes the ipc file, on every exit path.
A :class:`Pool` holds the workers of one backend and the queue of task ids
waiting for a free worker of that backend.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import signal
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import multiprocess
import zmq

from paas._errors import InternalError
from paas._worker import worker_main

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"
    CLOSED = "closed"


_WORKER_TRANSITIONS = {
    WorkerState.STARTING: {WorkerState.IDLE, WorkerState.CLOSED},
    WorkerState.IDLE: {WorkerState.BUSY, WorkerState.RETIRING, WorkerState.CLOSED},
    WorkerState.BUSY: {WorkerState.IDLE, WorkerState.RETIRING, WorkerState.CLOSED},
    WorkerState.RETIRING: {WorkerState.CLOSED},
    WorkerState.CLOSED: set(),
}
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class WorkerProcess:
    """One worker process and its task socket; closing it leaves nothing behind."""

    def __init__(
        self,
        *,
        worker_id: int,
        backend: str,
        provers: Mapping[str, Any],
        context: zmq.Context[zmq.Socket[bytes]],
        ipc_dir: Path,
        result_endpoint: str,
        heartbeat_interval_s: float,
        max_message_bytes: int,
        start_method: str,
        now_s: float,
    ) -> None:
        self.worker_id = worker_id
        self.backend = backend
        self.state = WorkerState.STARTING
        self.started_at_s = now_s
        self.last_seen_at_s = now_s
        self.cpu_s_at_last_seen = 0.0
        self.task_id: str | None = None
        self.attempt_id: int | None = None
        self.attempt_deadline_s: float | None = None
        self.attempt_deadline_at_s: float | None = None
        self.silent_but_busy = 0
        self.memory_checked_at_s = -math.inf
        self.tasks_done = 0
        self.start_error = ""

        self._ipc_path = ipc_dir / f"w{worker_id}"
        self.socket = context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.bind(f"ipc://{self._ipc_path}")
            mp = multiprocess.get_context(start_method)
            self.process = mp.Process(
                target=worker_main,
                args=(
                    worker_id,
                    backend,
                    dict(provers),
                    f"ipc://{self._ipc_path}",
                    result_endpoint,
                    heartbeat_interval_s,
                    max_message_bytes,
                    os.getpid(),
                ),
                name=f"paas-{backend}-{worker_id}",
            )
            self.process.start()
        except BaseException:
            self.socket.close()
            self._ipc_path.unlink(missing_ok=True)
            raise
        self.pid: int = self.process.pid
        self.sentinel: int = self.process.sentinel

    def move_to(self, new: WorkerState) -> None:
        if new not in _WORKER_TRANSITIONS[self.state]:
            raise InternalError(
                f"worker {self.worker_id}: illegal transition {self.state} -> {new}"
            )
        self.state = new

    def cpu_time_s(self) -> float | None:
        """User + system CPU seconds of the process, or None where /proc is absent."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker process, or None where /proc is absent."""
        try:
            statm = Path(f"/proc/{self.pid}/statm").read_text()
        except OSError:
            return None
        return int(statm.split()[1]) * _PAGE_BYTES

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (its own children too)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            # Not yet a group leader (very early in start-up) or already gone.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def exitcode(self) -> int | None:
        self.process.join(0)
        code: int | None = self.process.exitcode
        return code

    def close(self) -> int | None:
        """Kill if alive, reap, release socket and ipc file; return the exit code."""
        if self.state is WorkerState.CLOSED:
            return self.process.exitcode  # type: ignore[no-any-return]
        self.state = WorkerState.CLOSED
        if self.process.exitcode is None:
            self.kill()
        self.process.join()
        code: int | None = self.process.exitcode
        self.process.close()
        self.socket.close(linger=0)
        self._ipc_path.unlink(missing_ok=True)
        return code


class Pool:
    """The workers of one backend and the task ids waiting for them."""

    def __init__(self, backend: str, size: int, provers: Mapping[str, Any]) -> None:
        self.backend = backend
        self.size = size
        self.provers = dict(provers)
        self.workers: dict[int, WorkerProcess] = {}
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()  # the same ids, so a task is never queued twice
        self.idle: deque[WorkerProcess] = deque()
        self.start_failures = 0
        self.next_spawn_at_s = 0.0
        self.unavailable: str | None = None

    def push(self, task_id: str, *, front: bool = False) -> None:
        if task_id in self._queued:
            return
        self._queued.add(task_id)
        if front:
            self._queue.appendleft(task_id)
        else:
            self._queue.append(task_id)

    def pop(self) -> str:
        task_id = self._queue.popleft()
        self._queued.discard(task_id)
        return task_id

    def queued(self) -> frozenset[str]:
        return frozenset(self._queued)

    def __len__(self) -> int:
        return len(self._queue)

    def take_idle(self) -> WorkerProcess | None:
        while self.idle:
            worker = self.idle.popleft()
            if worker.state is WorkerState.IDLE:
                return worker
        return None
