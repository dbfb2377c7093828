"""Failure containment: deadlines, memory, recycling, crash loops, drain, signals."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    DEADLOCK_GUARD_S,
    FAST_HEARTBEAT,
    alive,
    launch,
    read_pid,
    wait_until,
)

import paas
from paas.testing import PROGRAM_KEY, BrokenSetupProver, Job, script_of

S = paas.TaskStatus
NewId = Callable[[], str]
ONE_TRY = paas.RetryPolicy(max_retries=0, base_delay_s=0, max_delay_s=0)


def test_deadline_kills_the_attempt_and_counts_as_transient(new_id: NewId) -> None:
    policy = paas.RetryPolicy(max_retries=1, base_delay_s=0, max_delay_s=0)
    with launch(retry=policy) as handle:
        task_id = handle.submit_task(
            Job(new_id(), {"do": "block"}), "native", deadline_s=0.3
        )
        with pytest.raises(paas.TaskFailed, match="exceeded its deadline of 0.3 s"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).attempts == 2
        assert handle.metrics()["deadlines_exceeded"] == 2
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"ok"}), "native")
            == b"ok"
        )


def test_deadline_kill_takes_the_provers_own_children_too(
    new_id: NewId, tmp_path: Path
) -> None:
    child_marker = tmp_path / "child"
    script = {"do": "spawn_child", "child_marker": str(child_marker)}
    with launch(retry=ONE_TRY) as handle:
        task_id = handle.submit_task(Job(new_id(), script), "native", deadline_s=0.5)
        child_pid = read_pid(child_marker)
        with pytest.raises(paas.TaskFailed, match="DeadlineExceeded"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
    wait_until(lambda: not alive(child_pid), f"the prover's child {child_pid} to die")


def test_program_deadline_applies_and_a_task_deadline_overrides_it(
    new_id: NewId,
) -> None:
    config = paas.ServiceConfig(
        pools={"native": 1}, retry=ONE_TRY, heartbeat=FAST_HEARTBEAT
    )
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY,
        input_fetcher=script_of,
        prover=paas.testing.ScriptedProver(),
        deadline_s=0.3,
    )
    with builder.launch() as handle:
        short = handle.submit_task(Job(new_id(), {"do": "block"}), "native")
        with pytest.raises(paas.TaskFailed, match="deadline of 0.3 s"):
            handle.wait(short, timeout_s=DEADLOCK_GUARD_S)
        busy = Job(new_id(), {"do": "busy", "seconds": 0.6})
        longer = handle.submit_task(busy, "native", deadline_s=DEADLOCK_GUARD_S)
        handle.wait(longer, timeout_s=DEADLOCK_GUARD_S)


def test_memory_cap_kills_the_worker_with_a_clear_error(new_id: NewId) -> None:
    with launch(retry=ONE_TRY, max_worker_memory_bytes=150 << 20) as handle:
        task_id = handle.submit_task(
            Job(new_id(), {"do": "grow", "megabytes": 400}), "native"
        )
        with pytest.raises(paas.TaskFailed, match="exceeded its memory limit"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.metrics()["memory_kills"] == 1
        assert (
            handle.execute(Job(new_id(), {"do": "echo", "data": b"ok"}), "native")
            == b"ok"
        )


def test_memory_error_in_the_prover_is_transient(new_id: NewId, tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    script = {"do": "allocate_huge", "counter": str(counter), "misbehave_times": 1}
    with launch() as handle:
        task_id = handle.submit_task(Job(new_id(), script), "native")
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"ok"
        assert handle.task(task_id).last_error_type == "MemoryError"
        assert handle.metrics()["workers_crashed"] == 0


def test_workers_are_recycled_between_tasks_without_losing_any(new_id: NewId) -> None:
    with launch(workers=1, max_tasks_per_worker=2) as handle:
        task_ids = [
            handle.submit_task(
                Job(new_id(), {"do": "echo", "data": b"%d" % n}), "native"
            )
            for n in range(6)
        ]
        proofs = [handle.wait(t, timeout_s=DEADLOCK_GUARD_S) for t in task_ids]
        metrics = handle.metrics()
    assert proofs == [b"%d" % n for n in range(6)]
    assert metrics["workers_retired"] >= 2
    assert metrics["workers_crashed"] == 0 and metrics["retries"] == 0


def test_pool_that_cannot_start_fails_its_tasks_instead_of_hanging(
    new_id: NewId,
) -> None:
    config = paas.ServiceConfig(
        pools={"native": 1},
        retry=ONE_TRY,
        max_start_failures=3,
        restart_backoff_s=0.01,
        restart_backoff_max_s=0.05,
    )
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY, input_fetcher=script_of, prover=BrokenSetupProver()
    )
    with builder.launch() as handle:
        task_id = handle.submit_task(Job(new_id(), {"do": "echo"}), "native")
        with pytest.raises(paas.TaskFailed, match="proving key file is missing"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).last_error_type == "PoolUnavailable"
        assert handle.metrics()["start_failures"] >= 3


def _release_job(new_id: NewId, release: Path, marker: Path | None = None) -> Job:
    script = {"do": "wait_for_file", "path": str(release), "data": b"drained"}
    if marker is not None:
        script["marker"] = str(marker)
    return Job(new_id(), script)


def test_drain_finishes_running_attempts_and_leaves_queued_tasks(
    new_id: NewId, tmp_path: Path
) -> None:
    release, marker = tmp_path / "release", tmp_path / "pid"
    handle = launch(workers=1)
    running = handle.submit_task(_release_job(new_id, release, marker), "native")
    queued = handle.submit_task(Job(new_id(), {"do": "echo"}), "native")
    read_pid(marker)
    started = handle.metrics()["workers_started"]

    stopper = threading.Thread(target=handle.shutdown, kwargs={"drain": True})
    stopper.start()
    wait_until(lambda: handle._supervisor._stop_at_s is not None, "the drain to begin")
    release.touch()
    stopper.join(DEADLOCK_GUARD_S)

    assert not stopper.is_alive()
    assert handle.status(running) is S.COMPLETED
    assert handle.status(queued) is S.QUEUED
    assert handle.metrics()["workers_started"] == started


def test_drain_timeout_cuts_off_a_proof_that_does_not_end(new_id: NewId) -> None:
    handle = launch(workers=1)
    task_id = handle.submit_task(Job(new_id(), {"do": "block"}), "native")
    wait_until(lambda: handle.status(task_id) is S.PROVING, "the task to start")
    handle.shutdown(drain=True, timeout_s=0.2)
    assert handle.status(task_id) is S.PROVING
    assert not any(alive(pid) for pid in handle.worker_pids()["native"])


def test_sigint_to_the_process_group_drains_without_killing_proofs(
    tmp_path: Path,
) -> None:
    release, marker = tmp_path / "release", tmp_path / "pid"
    host = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from helpers import launch
        from paas.testing import Job
        handle = launch(workers=1)
        handle.handle_signals(drain_timeout_s=60)
        script = {{"do": "wait_for_file", "path": {str(release)!r}, "data": b"x",
                   "marker": {str(marker)!r}}}
        running = handle.submit_task(Job("running", script), "native")
        queued = handle.submit_task(Job("queued", {{"do": "echo"}}), "native")
        while handle._supervisor._stop_at_s is None:
            time.sleep(0.01)
        print("draining", flush=True)
        handle._supervisor.stopped.wait()
        print(json.dumps({{"running": handle.status(running).name,
                          "queued": handle.status(queued).name}}))
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", host], stdout=subprocess.PIPE, start_new_session=True
    ) as proc:
        worker_pid = read_pid(marker)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], DEADLOCK_GUARD_S)
        assert readable, "the host never started draining after SIGINT"
        assert proc.stdout.readline() == b"draining\n"
        assert alive(worker_pid), "SIGINT reached the worker"
        release.touch()
        out, _ = proc.communicate(timeout=DEADLOCK_GUARD_S)
    assert proc.returncode == 0
    assert json.loads(out) == {"running": "COMPLETED", "queued": "QUEUED"}
    wait_until(lambda: not alive(worker_pid), "the worker to exit with its host")


def test_a_wait_begun_during_a_drain_gets_the_proof(
    new_id: NewId, tmp_path: Path
) -> None:
    release, marker = tmp_path / "release", tmp_path / "pid"
    handle = launch(workers=1)
    running = handle.submit_task(_release_job(new_id, release, marker), "native")
    read_pid(marker)
    stopper = threading.Thread(target=handle.shutdown, kwargs={"drain": True})
    stopper.start()
    wait_until(lambda: handle._supervisor._stop_at_s is not None, "the drain to begin")
    release.touch()
    assert handle.wait(running, timeout_s=DEADLOCK_GUARD_S) == b"drained"
    stopper.join(DEADLOCK_GUARD_S)
    assert not stopper.is_alive()
