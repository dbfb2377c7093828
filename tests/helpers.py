"""Helpers shared by the tests: launching ScriptedProver services, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import paas
from paas.testing import PROGRAM_KEY, ScriptedProver, script_of

FAST_HEARTBEAT = paas.HeartbeatConfig(
    interval_s=0.1, timeout_s=1.0, start_timeout_s=60.0
)
NO_BACKOFF = paas.RetryPolicy(max_retries=3, base_delay_s=0.0, max_delay_s=0.0)
DEADLOCK_GUARD_S = 60.0


def wait_until(
    condition: Callable[[], Any], what: str, observe: Callable[[], Any] = lambda: None
) -> Any:
    """Poll ``condition`` until truthy; if it never is, fail with what was observed.

    The timeout is only a deadlock guard: nothing here depends on how fast it is met.
    """
    deadline_s = time.monotonic() + DEADLOCK_GUARD_S
    while time.monotonic() < deadline_s:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(
        f"gave up after {DEADLOCK_GUARD_S} s waiting for {what}; saw {observe()!r}"
    )


def launch(
    workers: int = 1,
    retry: paas.RetryPolicy = NO_BACKOFF,
    heartbeat: paas.HeartbeatConfig = FAST_HEARTBEAT,
    **config: Any,
) -> paas.ServiceHandle:
    cfg = paas.ServiceConfig(
        pools={"native": workers}, retry=retry, heartbeat=heartbeat, **config
    )
    builder = paas.ProverServiceBuilder(cfg).register(
        PROGRAM_KEY, input_fetcher=script_of, prover=ScriptedProver("native")
    )
    return builder.launch()


def read_pid(marker: Path) -> int:
    """The pid a ScriptedProver wrote to ``marker`` once it started proving."""
    text = wait_until(
        lambda: marker.exists() and marker.read_text(), f"pid in {marker}"
    )
    return int(text)


def calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
