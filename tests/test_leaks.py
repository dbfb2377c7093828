"""After shutdown nothing is left: no child process, no fd, no ipc file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import multiprocess
from helpers import DEADLOCK_GUARD_S, alive, launch, read_pid, wait_until

from paas.testing import Job

NewId = Callable[[], str]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry.name))
    return found


def _exercise(new_id: NewId, tmp_path: Path) -> Path:
    with launch(workers=2) as handle:
        for _ in range(5):
            handle.execute(Job(new_id(), {"do": "echo"}), "native", DEADLOCK_GUARD_S)
        marker = tmp_path / f"pid-{new_id()}"
        blocked = handle.submit_task(
            Job(new_id(), {"do": "block", "marker": str(marker)}), "native"
        )
        os.kill(read_pid(marker), signal.SIGKILL)
        wait_until(
            lambda: handle.task(blocked).attempts == 2, "the task to be requeued"
        )
        ipc_dir = handle._supervisor._transport.ipc_dir
        assert ipc_dir.exists() and oct(ipc_dir.stat().st_mode & 0o777) == "0o700"
    return ipc_dir


def test_nothing_leaks_across_a_service_lifetime(new_id: NewId, tmp_path: Path) -> None:
    _exercise(new_id, tmp_path)  # warm up lazy imports and one-time allocations
    fds_before, children_before = _open_fds(), _children()

    ipc_dir = _exercise(new_id, tmp_path)

    assert _children() == children_before
    assert multiprocess.active_children() == []
    assert _open_fds() == fds_before
    assert not ipc_dir.exists()


def test_workers_die_with_their_host(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    host = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from helpers import launch
        from paas.testing import Job
        handle = launch(workers=2)
        script = {{"do": "block", "marker": {str(marker)!r}}}
        handle.submit_task(Job("orphan", script), "native")
        sys.stdin.read()
        """
    )
    with subprocess.Popen([sys.executable, "-c", host], stdin=subprocess.PIPE) as proc:
        try:
            worker_pid = read_pid(marker)
        finally:
            proc.kill()
    wait_until(
        lambda: not alive(worker_pid), f"worker {worker_pid} to exit after its host"
    )


def test_fd_count_is_flat_after_200_worker_replacements(new_id: NewId) -> None:
    with launch(workers=2, max_tasks_per_worker=1) as handle:

        def settled() -> bool:
            pids = handle.worker_pids()["native"]
            return len(pids) == 2 and all(
                w.state.name == "IDLE"
                for w in list(handle._supervisor.fleet.workers.values())
            )

        handle.execute(Job(new_id(), {"do": "echo"}), "native", DEADLOCK_GUARD_S)
        wait_until(settled, "two idle workers", handle.worker_pids)
        fds_before = len(_open_fds())

        task_ids = [
            handle.submit_task(Job(new_id(), {"do": "echo"}), "native")
            for _ in range(200)
        ]
        for task_id in task_ids:
            handle.wait(task_id, timeout_s=DEADLOCK_GUARD_S)
        wait_until(settled, "two idle workers", handle.worker_pids)
        retired = handle.metrics()["workers_retired"]
        fds_after = len(_open_fds())
    assert retired >= 200
    assert fds_after == fds_before


def test_ipc_dirs_of_dead_hosts_are_removed_at_launch(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as dead:
        dead.wait(DEADLOCK_GUARD_S)
    base = Path(tempfile.gettempdir())
    orphan = Path(tempfile.mkdtemp(prefix="paas-", dir=base))
    (orphan / "owner").write_text(str(dead.pid))
    (orphan / "up").write_text("")
    with launch():
        assert not orphan.exists()
