"""What ``paas demo`` checks besides the proofs: double completions and leaks.

    CountingProofStore  wraps a run's proof store and counts put() per task id; the
                        supervisor puts a proof just before a task becomes
                        COMPLETED, so a second put for one id is a task completed
                        twice
    PidLedger           every worker pid seen in handle.worker_pids(), with the
                        process start time, so that after shutdown a pid reused by
                        an unrelated process is not mistaken for a leftover worker
    HostSnapshot        this process's open fds and live children, taken before
                        launch and again after shutdown

Everything here reads /proc, so it works on Linux only, as paas itself does.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import multiprocess.resource_tracker

from paas import ProofStore

# Indexes into the fields of /proc/<pid>/stat that follow the command name.
_STATE = 0
_PARENT_PID = 1
_START_TIME = 19
_ZOMBIE = "Z"


class CountingProofStore:
    """A proof store that counts, per task id, the proofs put into another one."""

    def __init__(self, inner: ProofStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._puts: Counter[str] = Counter()

    def put(self, task_id: str, proof: bytes) -> None:
        # Counted only once stored: a put that raises fails the attempt, and the
        # retry's put is then the task's first.
        self._inner.put(task_id, proof)
        with self._lock:
            self._puts[task_id] += 1

    def get(self, task_id: str) -> bytes | None:
        return self._inner.get(task_id)

    def extra_puts(self) -> int:
        """Puts beyond the first for their task id: tasks completed twice."""
        with self._lock:
            return sum(count - 1 for count in self._puts.values())


class PidLedger:
    """Every worker pid noted so far, with the start time of its process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start_times: dict[int, str | None] = {}

    def note(self, pids_by_backend: Mapping[str, Iterable[int]]) -> list[int]:
        """Remember the listed pids; return them, sorted."""
        listed = sorted(pid for pids in pids_by_backend.values() for pid in pids)
        with self._lock:
            for pid in listed:
                if pid not in self._start_times:
                    self._start_times[pid] = _start_time(pid)
        return listed

    def __len__(self) -> int:
        with self._lock:
            return len(self._start_times)

    def still_running(self) -> set[int]:
        """Noted pids whose own process (same start time) is alive, not a zombie."""
        with self._lock:
            noted = dict(self._start_times)
        # A pid whose start time could not be read was gone when first noted.
        return {
            pid
            for pid, started in noted.items()
            if started is not None and _start_time(pid) == started and _alive(pid)
        }


@dataclass(frozen=True)
class HostSnapshot:
    """This process's open file descriptors and live (non-zombie) children."""

    open_fds: int
    children: frozenset[int]

    @classmethod
    def before_launch(cls) -> HostSnapshot:
        # multiprocess starts one resource tracker process (and keeps a pipe to it)
        # at the first spawn, and both last as long as the host. Starting it now
        # keeps that one-time helper out of the comparison with after_shutdown().
        multiprocess.resource_tracker.ensure_running()
        return cls.take()

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(len(os.listdir("/proc/self/fd")), frozenset(_live_children()))


def leftover_processes(
    ledger: PidLedger, before: HostSnapshot, after: HostSnapshot
) -> set[int]:
    """Workers still running, and children of the host that launch added."""
    return ledger.still_running() | (after.children - before.children)


def describe(pid: int) -> str:
    """``pid`` and its command line, for naming a leftover process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {b' '.join(argv).decode(errors='replace').strip()[:100]}"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ")".
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[_START_TIME]


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[_STATE] != _ZOMBIE


def _live_children() -> set[int]:
    me = str(os.getpid())
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and fields[_PARENT_PID] == me and fields[_STATE] != _ZOMBIE:
            children.add(int(entry))
    return children
