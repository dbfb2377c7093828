"""``paas demo`` end to end, as a user runs it: a real batch, a chaos run, imports.

Each run is a subprocess of ``python -m paas.cli`` with its own --state-dir under
tmp_path. The subprocess timeout is only a deadlock guard; on expiry, the failure
shows everything the demo printed up to then.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("chiavdf", reason="the demo extras are not installed")
pytest.importorskip("rich", reason="the demo extras are not installed")

DEADLOCK_GUARD_S = 180.0

# Rows of the chaos summary table: a name, then its count.
_SUMMARY_ROW = re.compile(r"^\s*([a-z][a-z ]*?)\s+(-?\d+)\b", re.MULTILINE)


def _demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "paas.cli", "demo", "--state-dir", "state"]
    try:
        return subprocess.run(
            [*argv, *options],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=DEADLOCK_GUARD_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"paas demo {' '.join(options)} still ran after {DEADLOCK_GUARD_S} s\n"
            f"stdout:\n{exc.stdout!r}\nstderr:\n{exc.stderr!r}"
        )


class _Lines:
    """A background demo's output (stdout and stderr), read on a thread of its own."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._reader.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str) -> None:
        """Block until a line containing ``text`` has been printed."""
        deadline_s = time.monotonic() + DEADLOCK_GUARD_S
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline_s - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} after {DEADLOCK_GUARD_S} s:\n{self.text()}")
            if line is None:
                pytest.fail(f"the demo ended without printing {text!r}:\n{self.text()}")
            self.seen.append(line)
            if text in line:
                return

    def rest(self, proc: subprocess.Popen[str]) -> str:
        """Everything the demo printed, once it has exited."""
        try:
            proc.wait(timeout=DEADLOCK_GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {DEADLOCK_GUARD_S} s:\n{self.text()}")
        self._reader.join(DEADLOCK_GUARD_S)
        if self._reader.is_alive():
            pytest.fail(f"its output stayed open after it exited:\n{self.text()}")
        while (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.text()

    def text(self) -> str:
        return "".join(self.seen)


@contextlib.contextmanager
def _demo_in_background(
    tmp_path: Path, *options: str
) -> Iterator[tuple[subprocess.Popen[str], _Lines]]:
    # INFO logs are what the tests synchronise on; unbuffered, they arrive at once.
    argv = [sys.executable, "-u", "-m", "paas.cli", "--log-level", "INFO", "demo"]
    with subprocess.Popen(
        [*argv, "--state-dir", "state", *options],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            yield proc, _Lines(proc)
        finally:
            if proc.poll() is None:
                proc.kill()  # the test failed; the workers die with their host


def _explain(run: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    )


def _run_dir(run: subprocess.CompletedProcess[str]) -> Path:
    match = re.search(r"^Run directory: (.+)$", run.stdout, re.MULTILINE)
    assert match, _explain(run)
    return Path(match.group(1))


def test_demo_proves_and_verifies_a_tiny_batch_in_a_fresh_run_dir(
    tmp_path: Path,
) -> None:
    runs = [_demo(tmp_path, "--tasks", "2", "--iterations", "2000") for _ in range(2)]

    for run in runs:
        assert run.returncode == 0, _explain(run)
        assert "OK: all 4 proofs were read back and verified." in run.stdout
    # Task ids repeat between the runs: only separate stores make both prove.
    first, second = (_run_dir(run) for run in runs)
    assert first != second
    for run_dir in (first, second):
        assert run_dir.parent.resolve() == (tmp_path / "state").resolve()
        assert (run_dir / "tasks.db").is_file()
        assert len(list(run_dir.glob("proofs/*/*.proof"))) == 4


def test_chaos_run_loses_nothing_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # Seed 3 strikes within the first 0.1 s, and its six events mix kills and
    # freezes; the cap keeps the run short whatever the events hit.
    run = _demo(
        tmp_path,
        "--chaos",
        "--tasks",
        "4",
        "--iterations",
        "20000",
        "--chaos-rate",
        "3",
        "--chaos-events",
        "6",
        "--seed",
        "3",
    )

    assert run.returncode == 0, _explain(run)
    summary = dict(_SUMMARY_ROW.findall(run.stdout.split("chaos summary", 1)[-1]))
    counts = {name: int(value) for name, value in summary.items()}
    injected = counts.get("kills injected", 0) + counts.get("freezes injected", 0)
    assert injected > 0, _explain(run)
    for name in ("lost", "completed twice", "leftover processes", "fd delta"):
        assert counts.get(name) == 0, f"{name}: {counts.get(name)}\n{_explain(run)}"
    assert "OK: all 8 proofs were read back and verified." in run.stdout


def test_importing_paas_the_cli_and_the_demo_leaves_groth16py_unloaded() -> None:
    # groth16py is GPL-3.0: only running a Groth16 program may load it.
    probe = (
        "import sys\n"
        "import paas, paas.cli\n"
        "import paas_examples.demo, paas_examples.groth16\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'groth16py'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=DEADLOCK_GUARD_S,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_first_ctrl_c_drains_and_leaves_queued_tasks_queued(tmp_path: Path) -> None:
    with _demo_in_background(tmp_path, "--tasks", "20", "--iterations", "200000") as (
        proc,
        lines,
    ):
        lines.wait_for("Task completed")
        proc.send_signal(signal.SIGINT)
        out = lines.rest(proc)

    assert proc.returncode == 128 + signal.SIGINT, out
    assert "Interrupted by SIGINT" in out and "0 lost, 0 bad proof(s)" in out, out
    left = re.search(r"^Left unfinished in tasks\.db: (.+)\.$", out, re.MULTILINE)
    assert left, out
    # The drain let running proofs finish, so nothing was cut off mid-proof.
    assert "QUEUED" in left.group(1) and "PROVING" not in left.group(1), out


def test_second_ctrl_c_stops_a_running_proof_at_once(tmp_path: Path) -> None:
    # One VDF proof of this length takes tens of seconds; the drain would wait.
    options = ("--tasks", "3", "--iterations", "8000000", "--drain-timeout-s", "600")
    with _demo_in_background(tmp_path, *options) as (proc, lines):
        lines.wait_for("started on worker")
        proc.send_signal(signal.SIGINT)
        lines.wait_for("draining")
        proc.send_signal(signal.SIGINT)
        out = lines.rest(proc)

    assert proc.returncode == 128 + signal.SIGINT, out
    left = re.search(r"^Left unfinished in tasks\.db: (.+)\.$", out, re.MULTILINE)
    assert left and "PROVING" in left.group(1), out
