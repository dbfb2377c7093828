"""Worker crashes and hangs, injected for real: signals, os._exit, segfaults."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from helpers import DEADLOCK_GUARD_S, calls, launch, read_pid, wait_until

import paas
from paas import _messages as wire
from paas.testing import Job

S = paas.TaskStatus
NewId = Callable[[], str]


def _once(new_id: NewId, tmp_path: Path, **script: Any) -> tuple[Job, Path, Path]:
    """A job that misbehaves on its first call only and succeeds on the next."""
    counter, marker = tmp_path / "calls", tmp_path / "pid"
    script.update(counter=str(counter), marker=str(marker), misbehave_times=1)
    return Job(new_id(), script), counter, marker


def _pool_full(handle: paas.ServiceHandle, size: int) -> bool:
    workers = handle._supervisor.fleet.workers.values()
    return sum(w.process.is_alive() for w in workers) == size


def test_sigkill_mid_prove_requeues_and_completes_exactly_once(
    new_id: NewId, tmp_path: Path
) -> None:
    job, counter, marker = _once(new_id, tmp_path, do="block", data=b"survived")
    with launch(workers=2) as handle:
        task_id = handle.submit_task(job, "native")
        os.kill(read_pid(marker), signal.SIGKILL)

        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"survived"
        record = handle.task(task_id)
        metrics = handle.metrics()
        wait_until(lambda: _pool_full(handle, 2), "pool back to 2 live workers")
    assert (record.status, record.attempts, record.retries) == (S.COMPLETED, 2, 1)
    assert record.last_error_type == "WorkerCrashed"
    assert "killed by signal SIGKILL" in (record.last_error_message or "")
    assert (metrics["completed"], metrics["workers_crashed"], calls(counter)) == (
        1,
        1,
        2,
    )


def test_sigstop_hang_is_detected_killed_and_requeued(
    new_id: NewId, tmp_path: Path
) -> None:
    job, counter, marker = _once(new_id, tmp_path, do="block", data=b"resumed")
    with launch(workers=1) as handle:
        task_id = handle.submit_task(job, "native")
        os.kill(read_pid(marker), signal.SIGSTOP)

        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"resumed"
        record = handle.task(task_id)
        metrics = handle.metrics()
    assert (record.attempts, record.last_error_type) == (2, "WorkerHung")
    assert "sent no heartbeat and used no CPU" in (record.last_error_message or "")
    assert (metrics["workers_hung"], metrics["workers_crashed"], calls(counter)) == (
        1,
        0,
        2,
    )


def test_pure_python_busy_loop_is_not_a_hang(new_id: NewId) -> None:
    heartbeat = paas.HeartbeatConfig(interval_s=0.05, timeout_s=0.3)
    with launch(heartbeat=heartbeat) as handle:
        task_id = handle.submit_task(
            Job(new_id(), {"do": "busy", "seconds": 3.0}), "native"
        )
        handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).attempts == 1
        assert handle.metrics()["workers_hung"] == 0


def test_native_code_holding_the_gil_is_not_a_hang(new_id: NewId) -> None:
    # The regex engine never releases the GIL, so the heartbeat thread falls silent
    # for the whole match; the supervisor must see the CPU time and let it run.
    heartbeat = paas.HeartbeatConfig(interval_s=0.05, timeout_s=0.3)
    with launch(heartbeat=heartbeat) as handle:
        task_id = handle.submit_task(Job(new_id(), {"do": "regex", "n": 37}), "native")
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"no match"
        metrics = handle.metrics()
        assert handle.task(task_id).attempts == 1
    assert metrics["workers_hung"] == 0
    assert metrics["silent_but_busy"] >= 1


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({"do": "exit", "code": 7}, "exited with code 7"),
        ({"do": "segfault"}, "killed by signal SIGSEGV"),
        ({"do": "sigkill"}, "killed by signal SIGKILL"),
    ],
    ids=["os._exit", "segfault", "self-sigkill"],
)
def test_worker_death_in_the_prover_is_retried(
    new_id: NewId, tmp_path: Path, script: dict[str, Any], expected: str
) -> None:
    job, counter, _ = _once(new_id, tmp_path, data=b"second try", **script)
    with launch() as handle:
        task_id = handle.submit_task(job, "native")
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"second try"
        record = handle.task(task_id)
    assert record.attempts == 2 and calls(counter) == 2
    assert expected in (record.last_error_message or "")


def test_task_that_always_kills_its_worker_fails_after_the_budget(
    new_id: NewId, tmp_path: Path
) -> None:
    counter = tmp_path / "calls"
    policy = paas.RetryPolicy(max_retries=2, base_delay_s=0, max_delay_s=0)
    with launch(retry=policy) as handle:
        task_id = handle.submit_task(
            Job(new_id(), {"do": "sigkill", "counter": str(counter)}), "native"
        )
        with pytest.raises(paas.TaskFailed, match="WorkerCrashed"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"y"}), "native")
            == b"y"
        )
        metrics = handle.metrics()
    assert calls(counter) == 3
    assert metrics["workers_crashed"] == 3


def test_hostile_frames_on_the_supervisor_socket_are_dropped(new_id: NewId) -> None:
    with launch() as handle:
        handle.execute(Job(new_id(), {"do": "echo"}), "native", DEADLOCK_GUARD_S)
        supervisor = handle._supervisor
        known = next(iter(supervisor.fleet.workers.values()))
        frames = [
            b"",
            b"\xc1 random",
            b"\x92\x01",  # truncated msgpack array
            msgspec.msgpack.encode({"type": "result", "worker_id": "x"}),
            wire.encode(wire.Shutdown()),  # valid message, wrong direction
            wire.encode(wire.Ready(worker_id=999, pid=1)),  # unknown worker
            wire.encode(
                wire.Heartbeat(worker_id=known.worker_id, pid=1, seq=1)
            ),  # pid lie
        ]
        stale = wire.Result(
            worker_id=known.worker_id,
            task_id="t",
            attempt_id=10**9,
            proof=b"",
            prove_time_s=0,
        )
        context = zmq.Context()
        intruder = context.socket(zmq.PUSH)
        intruder.connect(supervisor.inbox_endpoint)
        for frame in [*frames, wire.encode(stale)]:
            intruder.send(frame)
        intruder.close(linger=DEADLOCK_GUARD_S * 1000)
        context.term()

        wait_until(
            lambda: (
                handle.metrics()["frames_dropped"] == len(frames)
                and handle.metrics()["stale_replies"] == 1
            ),
            "every hostile frame counted",
            handle.metrics,
        )
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"z"}), "native")
            == b"z"
        )


def test_an_idle_worker_dying_is_replaced_without_touching_any_task(
    new_id: NewId,
) -> None:
    with launch(workers=1) as handle:
        handle.execute(Job(new_id(), {"do": "echo"}), "native", DEADLOCK_GUARD_S)
        (victim,) = handle.worker_pids()["native"]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: handle.metrics()["workers_crashed"] == 1, "the crash to be seen"
        )
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"n"}), "native")
            == b"n"
        )
        metrics = handle.metrics()
    assert (metrics["retries"], metrics["failed"]) == (0, 0)


def test_an_oversized_frame_is_counted_and_dropped(new_id: NewId) -> None:
    with launch(max_message_bytes=64 * 1024) as handle:
        context = zmq.Context()
        intruder = context.socket(zmq.PUSH)
        intruder.connect(handle._supervisor.inbox_endpoint)
        intruder.send(b"\x00" * (100 * 1024))
        intruder.close(linger=DEADLOCK_GUARD_S * 1000)
        context.term()
        wait_until(
            lambda: handle.metrics()["frames_dropped"] == 1,
            "the oversized frame to be counted",
            handle.metrics,
        )
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"o"}), "native")
            == b"o"
        )
