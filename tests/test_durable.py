"""Durable tasks: restart recovery, checkpoints, idempotent submit, blocked inputs."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DEADLOCK_GUARD_S,
    FAST_HEARTBEAT,
    NO_BACKOFF,
    calls,
    launch,
    wait_until,
)

import paas
from paas.testing import PROGRAM_KEY, Job, ScriptedProver, script_of

S = paas.TaskStatus
NewId = Callable[[], str]


def _durable(tmp_path: Path, **config: Any) -> paas.ServiceHandle:
    return launch(state_dir=str(tmp_path / "state"), **config)


def _release_job(program_id: str, release: Path, counter: Path) -> Job:
    script = {
        "do": "wait_for_file",
        "path": str(release),
        "counter": str(counter),
        "tag": program_id,
        "data": program_id.encode(),
    }
    return Job(program_id, script)


def test_unfinished_tasks_resume_after_a_restart(tmp_path: Path) -> None:
    release, counter = tmp_path / "release", tmp_path / "calls"
    done = [Job(f"done-{n}", {"do": "echo", "data": b"%d" % n}) for n in range(3)]
    with _durable(tmp_path, retry=NO_BACKOFF) as first:
        done_ids = [first.submit_task(job, "native") for job in done]
        for task_id in done_ids:
            first.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        running = first.submit_task(_release_job("running", release, counter), "native")
        queued = first.submit_task(_release_job("queued", release, counter), "native")
        wait_until(lambda: first.status(running) is S.PROVING, "the first task to run")
    # Leaving the block without drain killed the running attempt mid-proof.

    release.touch()
    with _durable(tmp_path, retry=NO_BACKOFF) as second:
        assert second.wait(running, timeout_s=DEADLOCK_GUARD_S) == b"running"
        assert second.wait(queued, timeout_s=DEADLOCK_GUARD_S) == b"queued"
        assert [second.wait(t) for t in done_ids] == [b"0", b"1", b"2"]
        record = second.task(running)
    assert (record.attempts, record.retries, record.last_error_type) == (
        2,
        1,
        "HostLost",
    )
    assert record.proof_size == len(b"running") and record.proof_sha256


def test_a_running_task_with_no_budget_left_fails_on_restart(tmp_path: Path) -> None:
    with _durable(tmp_path, retry=paas.RetryPolicy(max_retries=0)) as first:
        task_id = first.submit_task(Job("j", {"do": "block"}), "native")
        wait_until(lambda: first.status(task_id) is S.PROVING, "the task to run")
    with (
        _durable(tmp_path, retry=paas.RetryPolicy(max_retries=0)) as second,
        pytest.raises(paas.TaskFailed, match="HostLost"),
    ):
        second.wait(task_id, timeout_s=DEADLOCK_GUARD_S)


def test_a_stored_proof_is_never_proven_again(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    job = Job("checkpoint", {"do": "block", "counter": str(counter), "tag": "cp"})
    with _durable(tmp_path) as first:
        task_id = first.submit_task(job, "native")
        wait_until(lambda: first.status(task_id) is S.PROVING, "the task to run")
        # The proof reached the proof store, then the host stopped before the
        # task was marked COMPLETED.
        paas.FileProofStore(tmp_path / "state" / "proofs" / PROGRAM_KEY).put(
            task_id, b"stored before the crash"
        )
    with _durable(tmp_path) as second:
        assert (
            second.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
            == b"stored before the crash"
        )
        assert second.metrics()["recovered"] == 1
    assert calls(counter) == 1


def test_same_program_across_a_restart_is_the_same_task(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    job = Job("idem", {"do": "echo", "data": b"once", "counter": str(counter)})
    with _durable(tmp_path) as first:
        task_id = first.execute(job, "native", DEADLOCK_GUARD_S) and first.submit_task(
            job, "native"
        )
    with _durable(tmp_path) as second:
        assert second.submit_task(job, "native") == task_id
        assert second.status(task_id) is S.COMPLETED
        assert second.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"once"
    assert calls(counter) == 1


def test_idempotency_key_overrides_the_program_identity(
    service: paas.ServiceHandle,
) -> None:
    a = service.submit_task(Job("a", {"do": "echo"}), "native", idempotency_key="k1")
    b = service.submit_task(Job("b", {"do": "echo"}), "native", idempotency_key="k1")
    c = service.submit_task(Job("a", {"do": "echo"}), "native", idempotency_key="k2")
    assert a == b != c


def test_queries_listing_counts_and_pruning(tmp_path: Path) -> None:
    with _durable(tmp_path, retry=paas.RetryPolicy(max_retries=0)) as handle:
        ok = [
            handle.submit_task(Job(f"ok{n}", {"do": "echo"}), "native")
            for n in range(3)
        ]
        bad = handle.submit_task(
            Job("bad", {"do": "raise", "kind": "permanent"}), "native"
        )
        for task_id in ok:
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        with pytest.raises(paas.TaskFailed):
            handle.wait(bad, timeout_s=DEADLOCK_GUARD_S)

        assert {r.task_id for r in handle.tasks(status=S.COMPLETED)} == set(ok)
        assert [r.task_id for r in handle.tasks(status=S.PERMANENT_FAILURE)] == [bad]
        assert len(handle.tasks(program=PROGRAM_KEY, backend="native", limit=2)) == 2
        assert handle.tasks(backend="gpu") == []
        assert handle.counts()[S.COMPLETED] == 3
        assert handle.prune(older_than_s=3600) == 0
        assert handle.prune(older_than_s=0) == 4
        with pytest.raises(paas.TaskNotFound):
            handle.wait(bad)


@dataclass(frozen=True)
class Gated:
    """A program whose input exists only once ``gate`` does."""

    program_id: str
    gate: str
    verdict: str = "ok"
    routing_key: str = "gated"


def _gated_input(program: Gated) -> dict[str, Any]:
    if program.verdict == "reject":
        raise paas.InputRejected("the circuit inputs are out of range")
    if not Path(program.gate).exists():
        raise paas.InputNotReady(f"{program.gate} not written yet")
    return {"do": "echo", "data": program.program_id.encode()}


def _gated_service(tmp_path: Path | None = None, **config: Any) -> paas.ServiceHandle:
    if tmp_path is not None:
        config["state_dir"] = str(tmp_path / "state")
    cfg = paas.ServiceConfig(pools={"native": 1}, heartbeat=FAST_HEARTBEAT, **config)
    builder = paas.ProverServiceBuilder(cfg).register(
        "gated", input_fetcher=_gated_input, prover=ScriptedProver(), program_type=Gated
    )
    return builder.launch()


def test_input_not_ready_blocks_then_proves(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with _gated_service(blocked_recheck_s=0.05) as handle:
        task_id = handle.submit_task(Gated("g1", str(gate)), "native")
        wait_until(lambda: handle.status(task_id) is S.BLOCKED, "the task to block")
        gate.touch()
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"g1"
        assert handle.task(task_id).blocked_checks >= 1


def test_input_never_ready_fails_after_the_rechecks(tmp_path: Path) -> None:
    config = {"blocked_recheck_s": 0.01, "max_blocked_rechecks": 3}
    with _gated_service(**config) as handle:
        task_id = handle.submit_task(Gated("g2", str(tmp_path / "never")), "native")
        with pytest.raises(paas.TaskFailed, match="still not ready after 3 rechecks"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).attempts == 0


def test_rejected_input_fails_at_once(tmp_path: Path) -> None:
    with _gated_service() as handle:
        task_id = handle.submit_task(Gated("g3", "", verdict="reject"), "native")
        with pytest.raises(paas.TaskFailed, match="input rejected: the circuit inputs"):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).blocked_checks == 0


def test_a_blocked_task_resumes_after_a_restart(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with _gated_service(tmp_path, blocked_recheck_s=0.05) as first:
        task_id = first.submit_task(Gated("g4", str(gate)), "native")
        wait_until(lambda: first.status(task_id) is S.BLOCKED, "the task to block")
    gate.touch()
    with _gated_service(tmp_path, blocked_recheck_s=0.05) as second:
        assert second.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"g4"


class _FlakyStore(paas.InMemoryTaskStore):
    """Refuses to record completions while ``full`` is set, like a full disk."""

    full = True

    def transition(
        self,
        task_id: str,
        expected: paas.TaskStatus,
        new: paas.TaskStatus,
        **changes: Any,
    ) -> paas.TaskRecord:
        if new is S.COMPLETED and self.full:
            raise paas.StoreError("database or disk is full")
        return super().transition(task_id, expected, new, **changes)


def test_a_failed_store_write_never_reports_done_and_heals(new_id: NewId) -> None:
    store = _FlakyStore()
    config = paas.ServiceConfig(pools={"native": 1}, recovery_interval_s=0.2)
    builder = paas.ProverServiceBuilder(config, store=store).register(
        PROGRAM_KEY, input_fetcher=script_of, prover=ScriptedProver()
    )
    with builder.launch() as handle:
        task_id = handle.submit_task(
            Job(new_id(), {"do": "echo", "data": b"kept"}), "native"
        )
        wait_until(
            lambda: handle.metrics()["store_errors"] >= 1, "a failed store write"
        )
        assert handle.status(task_id) is not S.COMPLETED
        with pytest.raises(TimeoutError):
            handle.wait(task_id, timeout_s=0.05)
        store.full = False
        assert handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S) == b"kept"


class _BrokenProofStore:
    def put(self, task_id: str, proof: bytes) -> None:
        raise OSError(28, "No space left on device")

    def get(self, task_id: str) -> bytes | None:
        return None


def test_a_failing_proof_store_is_a_transient_failure(new_id: NewId) -> None:
    config = paas.ServiceConfig(pools={"native": 1}, retry=NO_BACKOFF)
    builder = paas.ProverServiceBuilder(config).register(
        PROGRAM_KEY,
        input_fetcher=script_of,
        prover=ScriptedProver(),
        proof_store=_BrokenProofStore(),
    )
    with builder.launch() as handle:
        task_id = handle.submit_task(Job(new_id(), {"do": "echo"}), "native")
        with pytest.raises(
            paas.TaskFailed, match="proof store put\\(\\) failed.*No space"
        ):
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        assert handle.task(task_id).attempts == NO_BACKOFF.max_retries + 1


@pytest.mark.parametrize("content", [b"not a database at all" * 10, "foreign"])
def test_a_foreign_state_file_is_refused_at_launch_and_kept(
    tmp_path: Path, content: bytes | str
) -> None:
    db = tmp_path / "state" / "tasks.db"
    db.parent.mkdir()
    if content == "foreign":
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
            conn.commit()
    else:
        db.write_bytes(content)  # type: ignore[arg-type]
    before = db.read_bytes()
    with pytest.raises(paas.StoreError, match=str(db)):
        _durable(tmp_path)
    assert db.read_bytes() == before


def test_a_second_service_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with _durable(tmp_path), pytest.raises(paas.StoreError, match="another writer"):
        _durable(tmp_path)


def test_status_command_reads_a_live_state_dir(tmp_path: Path) -> None:
    with _durable(tmp_path, retry=paas.RetryPolicy(max_retries=0)) as handle:
        handle.execute(Job("fine", {"do": "echo"}), "native", DEADLOCK_GUARD_S)
        bad = handle.submit_task(
            Job("bad", {"do": "raise", "kind": "permanent"}), "native"
        )
        with pytest.raises(paas.TaskFailed):
            handle.wait(bad, timeout_s=DEADLOCK_GUARD_S)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "paas.cli",
                "status",
                "--state-dir",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=DEADLOCK_GUARD_S,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["backend", "pending", "queued"]
    native = next(line.split() for line in lines if line.startswith("native"))
    assert native[-1] == "2"
    assert "Last permanent failures:" in out.stdout and bad in out.stdout


# -- a real host, killed for real --------------------------------------------------

_HOST = """
import sys
sys.path.insert(0, {tests!r})
from helpers import launch
from paas.testing import Job
handle = launch(workers=2, state_dir={state!r})
jobs = [
    Job(f"t{{n}}", {{"do": "busy", "seconds": 0.05, "counter": {counter!r},
                    "tag": f"t{{n}}"}})
    for n in range({tasks})
]
for job in jobs:
    handle.submit_task(job, "native")
print("submitted", flush=True)
for job in jobs:
    handle.wait(handle.submit_task(job, "native"), timeout_s=120)
print("finished", flush=True)
"""


def _busy_job(n: int, counter: Path) -> Job:
    script = {"do": "busy", "seconds": 0.05, "counter": str(counter), "tag": f"t{n}"}
    return Job(f"t{n}", script)


def _proven_by_tag(counter: Path) -> dict[str, int]:
    tally: dict[str, int] = {}
    for line in counter.read_text().splitlines() if counter.exists() else []:
        tag = line.split()[1]
        tally[tag] = tally.get(tag, 0) + 1
    return tally


@contextlib.contextmanager
def _host(script: str) -> Iterator[subprocess.Popen[bytes]]:
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE
    ) as proc:
        try:
            yield proc
        finally:
            proc.kill()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_host_killed_at_a_random_point_loses_nothing(tmp_path: Path, seed: int) -> None:
    tasks, counter, state = 24, tmp_path / "calls", tmp_path / "state"
    kill_after = random.Random(seed).randint(1, tasks - 4)
    script = textwrap.dedent(_HOST).format(
        tests=str(Path(__file__).parent),
        state=str(state),
        counter=str(counter),
        tasks=tasks,
    )
    with _host(script) as host:
        wait_until(
            lambda: sum(_proven_by_tag(counter).values()) >= kill_after, "progress"
        )
        host.send_signal(signal.SIGKILL)
        host.wait(DEADLOCK_GUARD_S)
    worker_pids = {int(line.split()[0]) for line in counter.read_text().splitlines()}
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in worker_pids),
        "the killed host's workers to exit",
    )
    proofs_dir = state / "proofs" / PROGRAM_KEY
    stored_before = {p.stem for p in proofs_dir.glob("*.proof")}
    proven_before = _proven_by_tag(counter)

    with launch(workers=2, state_dir=str(state)) as handle:
        # The host submits its batch again, as a real one would after a restart.
        ids = {
            f"t{n}": handle.submit_task(_busy_job(n, counter), "native")
            for n in range(tasks)
        }
        for task_id in ids.values():
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        records = {tag: handle.task(task_id) for tag, task_id in ids.items()}

    proven_after = _proven_by_tag(counter)
    assert all(r.status is S.COMPLETED and r.proof_size == 8 for r in records.values())
    for tag, record in records.items():
        if record.task_id in stored_before:
            assert proven_after.get(tag) == proven_before.get(tag), (
                f"{tag} proven again"
            )
    assert sum(proven_after.values()) >= tasks


def test_reading_a_closed_durable_service_says_it_is_closed(tmp_path: Path) -> None:
    handle = _durable(tmp_path)
    task_id = handle.execute(Job("c", {"do": "echo"}), "native", DEADLOCK_GUARD_S)
    task_id = handle.submit_task(Job("c", {"do": "echo"}), "native")
    handle.shutdown()
    handle.shutdown()
    with pytest.raises(paas.ServiceClosedError, match="read_only=True"):
        handle.status(task_id)
    with pytest.raises(paas.ServiceClosedError):
        handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
