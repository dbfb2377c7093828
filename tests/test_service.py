"""End-to-end behaviour of the service with real worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLOCK_GUARD_S, NO_BACKOFF, calls, launch, read_pid, wait_until

import paas
from paas.testing import PROGRAM_KEY, Job, ScriptedProver, script_of

S = paas.TaskStatus
NewId = Callable[[], str]


def _job(new_id: NewId, **script: Any) -> Job:
    return Job(new_id(), script)


def test_batch_completes_once_each(service: paas.ServiceHandle, new_id: NewId) -> None:
    jobs = [_job(new_id, do="echo", data=f"proof {n}".encode()) for n in range(40)]
    task_ids = [service.submit_task(job, "native") for job in jobs]

    proofs = [service.wait(t, timeout_s=DEADLOCK_GUARD_S) for t in task_ids]

    assert proofs == [f"proof {n}".encode() for n in range(40)]
    for task_id in task_ids:
        record = service.task(task_id)
        assert (record.status, record.attempts, record.retries) == (S.COMPLETED, 1, 0)
    assert service.metrics()["completed"] == 40
    assert service.counts()[S.COMPLETED] == 40


def test_execute_submits_and_waits(service: paas.ServiceHandle, new_id: NewId) -> None:
    assert service.execute(_job(new_id, do="echo", data=b"x"), "native") == b"x"


def test_unknown_program_and_backend_are_rejected_at_submit(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    with pytest.raises(paas.UnknownProgramError, match="no program registered for"):
        service.submit_task(Job(new_id(), routing_key="nope"), "native")
    with pytest.raises(paas.UnknownBackendError, match="no prover for backend 'gpu'"):
        service.submit_task(_job(new_id, do="echo"), "gpu")
    with pytest.raises(paas.UnknownProgramError):
        service.submit_task(object(), "native")  # type: ignore[arg-type]
    assert sum(service.counts().values()) == 0


def test_wait_on_unknown_task_raises_at_once(service: paas.ServiceHandle) -> None:
    with pytest.raises(paas.TaskNotFound):
        service.wait("no-such-task", timeout_s=DEADLOCK_GUARD_S)


def test_wait_times_out_with_the_status(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    task_id = service.submit_task(_job(new_id, do="block"), "native")
    wait_until(lambda: service.status(task_id) is S.PROVING, "task to start")
    with pytest.raises(TimeoutError, match="is still PROVING after 0.05 s"):
        service.wait(task_id, timeout_s=0.05)


def test_same_program_twice_is_one_task(
    service: paas.ServiceHandle, new_id: NewId, tmp_path: Path
) -> None:
    counter = tmp_path / "calls"
    job = _job(new_id, do="echo", data=b"once", counter=str(counter))
    first = service.submit_task(job, "native")
    second = service.submit_task(job, "native")
    assert first == second
    assert service.wait(first, timeout_s=DEADLOCK_GUARD_S) == b"once"
    assert service.submit_task(job, "native") == first
    assert calls(counter) == 1


def test_transient_failures_are_retried_until_success(
    service: paas.ServiceHandle, new_id: NewId, tmp_path: Path
) -> None:
    counter = tmp_path / "calls"
    job = _job(
        new_id,
        do="raise",
        kind="transient",
        counter=str(counter),
        misbehave_times=2,
        data=b"third time",
    )
    assert service.execute(job, "native", timeout_s=DEADLOCK_GUARD_S) == b"third time"
    record = service.task(service.submit_task(job, "native"))
    assert (record.attempts, record.retries, calls(counter)) == (3, 2, 3)
    assert record.last_error_type == "TransientError"


@pytest.mark.parametrize("max_retries", [0, 1, 3])
@pytest.mark.parametrize("kind", ["transient", "other"])
def test_retry_budget_runs_the_prover_exactly_max_retries_plus_one_times(
    new_id: NewId, tmp_path: Path, max_retries: int, kind: str
) -> None:
    counter = tmp_path / "calls"
    policy = paas.RetryPolicy(max_retries=max_retries, base_delay_s=0, max_delay_s=0)
    with launch(retry=policy) as handle:
        task_id = handle.submit_task(
            _job(new_id, do="raise", kind=kind, counter=str(counter)), "native"
        )
        with pytest.raises(paas.TaskFailed) as info:
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        record = handle.task(task_id)
    assert calls(counter) == max_retries + 1
    assert (record.status, record.attempts, record.retries) == (
        S.PERMANENT_FAILURE,
        max_retries + 1,
        max_retries,
    )
    expected_type = "TransientError" if kind == "transient" else "ValueError"
    assert info.value.error_type == expected_type
    assert info.value.attempts == max_retries + 1
    assert "Traceback" in info.value.detail


def test_permanent_error_is_never_retried(
    service: paas.ServiceHandle, new_id: NewId, tmp_path: Path
) -> None:
    counter = tmp_path / "calls"
    task_id = service.submit_task(
        _job(new_id, do="raise", kind="permanent", counter=str(counter)), "native"
    )
    with pytest.raises(paas.TaskFailed, match="PermanentError: scripted permanent"):
        service.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
    assert calls(counter) == 1
    assert service.task(task_id).retries == 0


@pytest.mark.parametrize(
    ("kind", "error_type"), [("keyboard", "KeyboardInterrupt"), ("exit", "SystemExit")]
)
def test_base_exceptions_in_the_prover_are_transient_and_keep_the_worker(
    new_id: NewId, tmp_path: Path, kind: str, error_type: str
) -> None:
    counter = tmp_path / "calls"
    with launch() as handle:
        job = _job(
            new_id, do="raise", kind=kind, counter=str(counter), misbehave_times=1
        )
        task_id = handle.submit_task(job, "native")
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"ok"
        assert handle.task(task_id).last_error_type == error_type
        assert handle.metrics()["workers_started"] == 1


def test_result_that_is_not_bytes_fails_permanently(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    task_id = service.submit_task(_job(new_id, do="return", value={"a": 1}), "native")
    with pytest.raises(
        paas.TaskFailed, match="prove\\(\\) returned dict, expected bytes"
    ):
        service.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
    assert service.task(task_id).attempts == 1


def test_result_larger_than_10_mb(service: paas.ServiceHandle, new_id: NewId) -> None:
    size = 12 * 1024 * 1024
    proof = service.execute(_job(new_id, do="size", n=size), "native", DEADLOCK_GUARD_S)
    assert proof == bytes(size)


def test_result_over_the_message_limit_fails_with_the_setting_named(
    new_id: NewId,
) -> None:
    with launch(max_message_bytes=64 * 1024) as handle:
        task_id = handle.submit_task(_job(new_id, do="size", n=100_000), "native")
        with pytest.raises(
            paas.TaskFailed, match="over ServiceConfig.max_message_bytes"
        ):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.execute(_job(new_id, do="echo", data=b"ok"), "native") == b"ok"


def test_unencodable_input_fails_the_task_clearly(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    task_id = service.submit_task(_job(new_id, do="echo", data=object()), "native")
    with pytest.raises(paas.TaskFailed, match="input cannot be encoded"):
        service.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
    assert service.task(task_id).attempts == 0


def _broken_fetcher(job: Job) -> dict[str, Any]:
    raise OSError("input bucket unreachable")


def test_input_fetcher_error_fails_the_task_clearly(new_id: NewId) -> None:
    config = paas.ServiceConfig(pools={"native": 1}, retry=NO_BACKOFF)
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY, input_fetcher=_broken_fetcher, prover=ScriptedProver()
    )
    with builder.launch() as handle:
        task_id = handle.submit_task(Job(new_id()), "native")
        with pytest.raises(paas.TaskFailed, match="input_fetcher raised: input bucket"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)


def test_a_slow_proof_never_holds_back_an_idle_worker(
    service: paas.ServiceHandle, new_id: NewId, tmp_path: Path
) -> None:
    slow = service.submit_task(
        _job(new_id, do="block", marker=str(tmp_path / "m")), "native"
    )
    read_pid(tmp_path / "m")
    quick = [service.submit_task(_job(new_id, do="echo"), "native") for _ in range(20)]
    for task_id in quick:
        service.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
    assert service.status(slow) is S.PROVING


def test_each_backend_has_its_own_pool(new_id: NewId, tmp_path: Path) -> None:
    config = paas.ServiceConfig(pools={"a": 1, "b": 1}, retry=NO_BACKOFF)
    provers = [ScriptedProver("a"), ScriptedProver("b")]
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY, input_fetcher=script_of, prover=provers
    )
    with builder.launch() as handle:
        marker = tmp_path / "m"
        blocked = handle.submit_task(_job(new_id, do="block", marker=str(marker)), "a")
        read_pid(marker)
        done = handle.submit_task(_job(new_id, do="echo", data=b"b"), "b")
        assert handle.wait(done, timeout_s=DEADLOCK_GUARD_S) == b"b"
        assert handle.task(done).backend == "b"
        assert handle.status(blocked) is S.PROVING


def test_shutdown_wakes_waiters_and_closes_the_handle(new_id: NewId) -> None:
    handle = launch()
    task_id = handle.submit_task(_job(new_id, do="block"), "native")
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            handle.wait(task_id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: handle.status(task_id) is S.PROVING, "task to start")
    handle.shutdown()
    thread.join(DEADLOCK_GUARD_S)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], paas.ServiceClosedError)
    with pytest.raises(paas.ServiceClosedError):
        handle.submit_task(_job(new_id, do="echo"), "native")
    with pytest.raises(paas.ServiceClosedError):
        handle.__enter__()
    handle.shutdown()


def test_handle_refuses_reentry() -> None:
    with launch() as handle, pytest.raises(paas.ServiceClosedError, match="already in"):
        handle.__enter__()


def test_submit_many_is_submit_task_for_each(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    jobs = [_job(new_id, do="echo", data=b"%d" % n) for n in range(10)]
    task_ids = service.submit_many(jobs, "native")
    assert task_ids == [service.submit_task(job, "native") for job in jobs]
    assert [service.wait(t, DEADLOCK_GUARD_S) for t in task_ids] == [
        b"%d" % n for n in range(10)
    ]
    with pytest.raises(paas.UnknownBackendError):
        service.submit_many(jobs, "gpu")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.tasks(limit=-1), "limit must be >= 0"),
        (lambda h: h.tasks(status="bogus"), "status must be a TaskStatus"),
        (lambda h: h.wait("x", timeout_s=float("nan")), "timeout_s must be finite"),
        (lambda h: h.wait("x", timeout_s="1"), "timeout_s must be a number"),
        (lambda h: h.prune(float("nan")), "older_than_s must be finite"),
        (
            lambda h: h.submit_task(Job("j"), "native", idempotency_key=""),
            "idempotency_key must be a non-empty str",
        ),
    ],
)
def test_bad_query_arguments_are_rejected(
    service: paas.ServiceHandle, call: Callable[[Any], Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(service)


def test_tasks_accepts_a_status_name(
    service: paas.ServiceHandle, new_id: NewId
) -> None:
    assert service.execute(_job(new_id, do="echo"), "native", DEADLOCK_GUARD_S) == b""
    assert len(service.tasks(status="completed")) == 1
    assert len(service.tasks(status="COMPLETED")) == 1


def _exiting_fetcher(job: Job) -> dict[str, Any]:
    if job.program_id.startswith("bad"):
        raise SystemExit(1)
    return job.script


def test_a_fetcher_raising_systemexit_fails_only_its_task(new_id: NewId) -> None:
    config = paas.ServiceConfig(pools={"native": 1}, fetch_threads=1)
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY, input_fetcher=_exiting_fetcher, prover=ScriptedProver()
    )
    with builder.launch() as handle:
        for n in range(3):
            bad = handle.submit_task(Job(f"bad-{n}-{new_id()}"), "native")
            with pytest.raises(paas.TaskFailed, match="SystemExit"):
                handle.wait(bad, timeout_s=DEADLOCK_GUARD_S)
        good = Job(new_id(), {"do": "echo", "data": b"fine"})
        assert handle.execute(good, "native", DEADLOCK_GUARD_S) == b"fine"
