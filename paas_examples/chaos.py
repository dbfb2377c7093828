"""Fault injection for ``paas demo --chaos``: kill and freeze live workers at random.

    chaos thread, every 50 ms    note handle.worker_pids() in the PidLedger
    at random times, on average  pick a live worker it has not frozen already and
    --chaos-rate per second      SIGKILL it, or SIGSTOP it (--chaos-freeze-share)
    supervisor                   sees a kill through the process sentinel (a
                                 crash) and a freeze through heartbeat silence with
                                 no CPU growth (a hang, then its own SIGKILL); it
                                 retries the task the worker held and starts a
                                 replacement

Only pids that ``handle.worker_pids()`` lists are ever signalled. A listed worker
can die and its pid be reused before the signal goes out, so the chaos thread
opens a pidfd first, checks that the pid is still listed, and signals through the
pidfd: the signal then reaches the process that was listed, or nothing.

Every event draws the same three numbers from the seeded RNG (gap, target, kind),
so --seed fixes the schedule and the kinds; which pid is hit still depends on
which workers happen to be alive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import threading
import time
from types import TracebackType
from typing import Self

from paas import HeartbeatConfig, RetryPolicy, ServiceConfig, ServiceHandle
from paas_examples.audit import PidLedger

_TICK_S = 0.05

# A worker is hit every second or two, and each hit costs its attempt, so the
# settings below keep the service patient where its defaults would give up.
_HEARTBEAT = HeartbeatConfig(
    interval_s=0.2,
    timeout_s=2.0,
    # A worker frozen while starting is caught only by this; the default 60 s
    # would stall its pool for a minute.
    start_timeout_s=5.0,
)
_RETRY = RetryPolicy(max_retries=1000, base_delay_s=0.05, max_delay_s=1.0)
# Kills during start-up are the injector's doing, not a prover that cannot start:
# never declare a pool unavailable over them.
_MAX_START_FAILURES = 1_000_000
_RESTART_BACKOFF_MAX_S = 1.0
# A worker frozen when the batch ends cannot read its shutdown message; it is
# killed after this grace period, so keep it short.
_SHUTDOWN_GRACE_S = 2.0


def hardened(config: ServiceConfig) -> ServiceConfig:
    """``config`` with the heartbeat, retry and restart settings a chaos run needs."""
    return dataclasses.replace(
        config,
        heartbeat=_HEARTBEAT,
        retry=_RETRY,
        max_start_failures=_MAX_START_FAILURES,
        restart_backoff_max_s=_RESTART_BACKOFF_MAX_S,
        shutdown_grace_s=_SHUTDOWN_GRACE_S,
    )


class ChaosMonkey:
    """A thread that kills and freezes random live workers until the block ends.

    With ``max_events``, it stops injecting after that many kills and freezes, but
    goes on noting worker pids.
    """

    def __init__(
        self,
        handle: ServiceHandle,
        ledger: PidLedger,
        *,
        rate_per_s: float,
        freeze_share: float,
        rng: random.Random,
        max_events: int | None = None,
    ) -> None:
        self.kills = 0
        self.freezes = 0
        self.missed = 0  # the chosen worker was gone before the signal went out
        self._handle = handle
        self._ledger = ledger
        self._rate_per_s = rate_per_s
        self._freeze_share = freeze_share
        self._rng = rng
        self._max_events = max_events
        self._frozen: set[int] = set()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paas-demo-chaos")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        # Once more, for a worker started after the thread's last look.
        self._ledger.note(self._handle.worker_pids())
        if self._error is not None and exc is None:
            raise RuntimeError("the chaos thread failed") from self._error

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            next_at_s = time.monotonic() + self._gap_s()
            while not self._stop.wait(_TICK_S):
                live = self._ledger.note(self._handle.worker_pids())
                if time.monotonic() >= next_at_s and not self._spent():
                    self._strike(live)
                    next_at_s = time.monotonic() + self._gap_s()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            self._error = exc

    def _spent(self) -> bool:
        limit = self._max_events
        return limit is not None and self.kills + self.freezes >= limit

    def _gap_s(self) -> float:
        # Exponential gaps make the events a Poisson process: no rhythm a pool
        # could fall into step with.
        return self._rng.expovariate(self._rate_per_s)

    def _strike(self, live: list[int]) -> None:
        pick, kind = self._rng.random(), self._rng.random()
        # A frozen worker is doomed already; hitting it again would teach nothing.
        self._frozen.intersection_update(live)
        targets = [pid for pid in live if pid not in self._frozen]
        if not targets:
            return
        pid = targets[int(pick * len(targets))]
        freeze = kind < self._freeze_share
        if not self._signal_worker(pid, signal.SIGSTOP if freeze else signal.SIGKILL):
            self.missed += 1
        elif freeze:
            self.freezes += 1
            self._frozen.add(pid)
        else:
            self.kills += 1

    def _signal_worker(self, pid: int, signum: signal.Signals) -> bool:
        """Send ``signum`` to worker ``pid`` if it is still a listed worker."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            if pid not in self._listed_pids():
                return False
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signum)
                return True
            return False  # it exited between the check and the signal
        finally:
            os.close(pidfd)

    def _listed_pids(self) -> set[int]:
        return {pid for pids in self._handle.worker_pids().values() for pid in pids}
