"""The kill rules of _health.diagnose, driven by a fake worker and a jumping clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

import paas
from paas._health import diagnose
from paas._pool import WorkerState

CONFIG = paas.ServiceConfig(
    pools={"native": 1},
    heartbeat=paas.HeartbeatConfig(interval_s=0.5, timeout_s=2.0, start_timeout_s=10.0),
    max_worker_memory_bytes=100 << 20,
)


@dataclass
class FakeWorker:
    """Just what diagnose() reads of a WorkerProcess."""

    state: WorkerState = WorkerState.BUSY
    pid: int = 4242
    worker_id: int = 1
    backend: str = "native"
    started_at_s: float = 0.0
    last_seen_at_s: float = 0.0
    cpu_s_at_last_seen: float = 0.0
    cpu_s: float | None = 0.0
    rss: int | None = 10 << 20
    attempt_deadline_s: float | None = None
    attempt_deadline_at_s: float | None = None
    silent_but_busy: int = 0
    memory_checked_at_s: float = -math.inf

    def cpu_time_s(self) -> float | None:
        return self.cpu_s

    def rss_bytes(self) -> int | None:
        return self.rss


def _diagnose(worker: FakeWorker, clock: paas.FakeClock) -> paas.WorkerLost | None:
    return diagnose(worker, clock.monotonic(), CONFIG)  # type: ignore[arg-type]


def test_a_quiet_worker_within_the_timeout_is_fine() -> None:
    clock = paas.FakeClock(start_s=0.0)
    clock.advance(1.9)
    assert _diagnose(FakeWorker(), clock) is None


def test_silence_without_cpu_past_the_timeout_is_a_hang() -> None:
    clock = paas.FakeClock(start_s=0.0)
    clock.advance(2.5)
    error = _diagnose(FakeWorker(cpu_s=0.01), clock)
    assert isinstance(error, paas.WorkerHung) and error.silent_s == 2.5


def test_silence_while_burning_cpu_is_not_a_hang() -> None:
    clock = paas.FakeClock(start_s=0.0)
    worker = FakeWorker(cpu_s=2.4)
    clock.advance(2.5)
    assert _diagnose(worker, clock) is None
    assert worker.silent_but_busy == 1
    assert (worker.last_seen_at_s, worker.cpu_s_at_last_seen) == (2.5, 2.4)

    # Then it stops using the CPU: one more timeout later it is a hang.
    clock.advance(2.5)
    assert isinstance(_diagnose(worker, clock), paas.WorkerHung)


def test_without_proc_a_silent_worker_is_a_hang() -> None:
    clock = paas.FakeClock(start_s=0.0)
    clock.advance(3.0)
    assert isinstance(_diagnose(FakeWorker(cpu_s=None), clock), paas.WorkerHung)


def test_start_up_is_bounded_by_its_own_timeout() -> None:
    clock = paas.FakeClock(start_s=0.0)
    worker = FakeWorker(state=WorkerState.STARTING)
    clock.advance(9.9)
    assert _diagnose(worker, clock) is None
    clock.advance(0.2)
    error = _diagnose(worker, clock)
    assert isinstance(error, paas.WorkerHung)
    assert "start_timeout_s" in str(error)


def test_deadline_applies_only_to_the_running_attempt() -> None:
    clock = paas.FakeClock(start_s=0.0)
    worker = FakeWorker(attempt_deadline_s=1.0, attempt_deadline_at_s=1.0, cpu_s=5.0)
    clock.advance(0.99)
    assert _diagnose(worker, clock) is None
    clock.advance(0.01)
    error = _diagnose(worker, clock)
    assert isinstance(error, paas.DeadlineExceeded) and error.deadline_s == 1.0
    worker.state = WorkerState.IDLE
    assert _diagnose(worker, clock) is None


def test_memory_is_sampled_once_per_heartbeat_interval() -> None:
    clock = paas.FakeClock(start_s=0.0)
    worker = FakeWorker(rss=10 << 20)
    assert _diagnose(worker, clock) is None
    worker.rss = 200 << 20
    clock.advance(0.4)
    assert _diagnose(worker, clock) is None  # not sampled again yet
    clock.advance(0.1)
    assert isinstance(_diagnose(worker, clock), paas.MemoryLimitExceeded)


def test_memory_over_the_cap_is_killed_with_the_numbers() -> None:
    clock = paas.FakeClock(start_s=0.0)
    assert _diagnose(FakeWorker(rss=100 << 20), clock) is None
    error = _diagnose(FakeWorker(rss=(100 << 20) + 1), clock)
    assert isinstance(error, paas.MemoryLimitExceeded)
    assert "memory limit" in str(error) and error.limit_bytes == 100 << 20
