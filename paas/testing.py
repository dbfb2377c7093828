"""In-project provers and helpers for tests, examples and benchmarks.

:class:`ScriptedProver` does whatever its input says: echo, fail transiently or
permanently, crash the worker, hang, spin on the CPU with or without the GIL.
It is instant for the happy path, so tests that need "some prover" use it and
keep real provers for the end-to-end runs.

Inputs are dicts with a ``do`` key; see :meth:`ScriptedProver.prove`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paas._errors import PermanentError, TransientError

PROGRAM_KEY = "scripted"


@dataclass(frozen=True)
class Job:
    """A program for :class:`ScriptedProver`; its input is ``script``."""

    program_id: str
    script: dict[str, Any] = field(default_factory=lambda: {"do": "echo", "data": b""})
    routing_key: str = PROGRAM_KEY


def script_of(job: Job) -> dict[str, Any]:
    """Input fetcher for :class:`Job` programs."""
    return job.script


def _count_call(counter: str, tag: str = "") -> int:
    """Append this call to ``counter`` (a line per call); return the call number."""
    with open(counter, "a") as out:
        out.write(f"{os.getpid()} {tag}\n")
    return len(Path(counter).read_text().splitlines())


def _block_forever() -> None:
    while True:
        time.sleep(3600)


@dataclass(frozen=True)
class ScriptedProver:
    """A prover whose behaviour is chosen by the task input."""

    backend: str = "native"

    def prove(self, script: dict[str, Any]) -> Any:
        action = script["do"]
        if "counter" in script:
            calls = _count_call(script["counter"], script.get("tag", ""))
            if calls > script.get("misbehave_times", 1 << 62):
                return script.get("data", b"ok")
        if "marker" in script:
            Path(script["marker"]).write_text(str(os.getpid()))
        return getattr(self, f"_do_{action}")(script)

    def _do_echo(self, script: dict[str, Any]) -> bytes:
        return bytes(script.get("data", b""))

    def _do_size(self, script: dict[str, Any]) -> bytes:
        return bytes(script["n"])

    def _do_raise(self, script: dict[str, Any]) -> bytes:
        kind = script["kind"]
        if kind == "transient":
            raise TransientError("scripted transient failure")
        if kind == "permanent":
            raise PermanentError("scripted permanent failure")
        if kind == "keyboard":
            raise KeyboardInterrupt
        if kind == "exit":
            raise SystemExit(3)
        raise ValueError("scripted unexpected failure")

    def _do_exit(self, script: dict[str, Any]) -> bytes:
        os._exit(script.get("code", 1))

    def _do_segfault(self, script: dict[str, Any]) -> bytes:
        ctypes.string_at(0)
        return b"unreachable"

    def _do_sigkill(self, script: dict[str, Any]) -> bytes:
        os.kill(os.getpid(), signal.SIGKILL)
        return b"unreachable"

    def _do_block(self, script: dict[str, Any]) -> bytes:
        _block_forever()
        return b"unreachable"

    def _do_busy(self, script: dict[str, Any]) -> bytes:
        """Spin in pure Python for ``seconds`` of wall time."""
        end_s = time.monotonic() + script["seconds"]
        spins = 0
        while time.monotonic() < end_s:
            spins += 1
        return spins.to_bytes(8, "big")

    def _do_regex(self, script: dict[str, Any]) -> bytes:
        """Hold the GIL in C: a backtracking regex never yields to other threads."""
        text = "a" * script["n"] + "!"
        return b"match" if re.match(r"(a|aa)+$", text) else b"no match"

    def _do_return(self, script: dict[str, Any]) -> Any:
        return script["value"]

    def _do_wait_for_file(self, script: dict[str, Any]) -> bytes:
        """Work until ``path`` exists: a proof whose end the test decides."""
        while not Path(script["path"]).exists():
            time.sleep(0.01)
        return bytes(script.get("data", b"done"))

    def _do_grow(self, script: dict[str, Any]) -> bytes:
        """Touch ``megabytes`` of memory, then hold it and block."""
        hoard = bytearray(script["megabytes"] << 20)
        hoard[::4096] = b"x" * len(hoard[::4096])
        _block_forever()
        return bytes(hoard[:1])

    def _do_allocate_huge(self, script: dict[str, Any]) -> bytes:
        return bytes(bytearray(1 << 60))  # raises a real MemoryError

    def _do_spawn_child(self, script: dict[str, Any]) -> bytes:
        """Start a child process that would outlive the prover, then block."""
        child = subprocess.Popen(["sleep", "600"])
        Path(script["child_marker"]).write_text(str(child.pid))
        _block_forever()
        return b"unreachable"


@dataclass(frozen=True)
class BrokenSetupProver(ScriptedProver):
    """A prover whose per-worker setup always fails, as a broken import would."""

    def setup(self) -> None:
        raise RuntimeError("proving key file is missing")
