"""Ctrl-C for ``paas demo``: the service's own signal handlers, and a way to notice.

    first SIGINT/SIGTERM   the service drains: running proofs finish, queued
                           tasks stay queued in tasks.db (handle.handle_signals)
    second signal          the service stops at once; the running attempts are
                           killed and stay PROVING in tasks.db, and the next launch
                           on that state_dir retries them
    the demo               stops watching, waits for the drain, reads what is
                           left from the run dir and exits with 128 + the signal

The service's handlers are installed only while the batch runs; the handlers that
were there before come back for the verification, so a Ctrl-C there interrupts as
usual.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from paas import ServiceHandle

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# After the drain, the service's signal thread still closes the task store and
# the fetch threads; that takes milliseconds, and this bounds the wait for it.
_SIGNAL_SHUTDOWN_JOIN_S = 30.0
_SIGNAL_SHUTDOWN_THREAD = "paas-signal-shutdown"


@dataclass
class Interrupt:
    """The first stop signal that arrived while the batch ran, if any.

    Signal handlers run on the main thread between bytecodes, so the handler only
    assigns an attribute: taking a lock there could deadlock with the very code it
    interrupted. The main thread polls ``signum``.
    """

    signum: int | None = None

    @property
    def name(self) -> str:
        return "no signal" if self.signum is None else signal.Signals(self.signum).name


@contextlib.contextmanager
def drain_on_signals(
    handle: ServiceHandle, drain_timeout_s: float
) -> Iterator[Interrupt]:
    """Let the service's handlers take SIGINT and SIGTERM while the block runs."""
    interrupt = Interrupt()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handle.handle_signals(drain_timeout_s=drain_timeout_s)
    for signum in STOP_SIGNALS:
        service_handler = signal.getsignal(signum)
        signal.signal(signum, functools.partial(_note, interrupt, service_handler))
    try:
        yield interrupt
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_for_drain(handle: ServiceHandle, drain_timeout_s: float) -> None:
    """Block until the drain a signal started is over, then until the store closed.

    Joining the same drain from here keeps its deadline (the earlier one wins), and
    a second signal still cuts it short.
    """
    handle.shutdown(drain=True, timeout_s=drain_timeout_s)
    # Known limitation: ServiceHandle offers no way to wait for the shutdown its
    # signal handler started, and shutdown() returns once the workers are gone,
    # while that thread may still be closing the task store. The demo joins the
    # thread by its name, so the fd count and the read-only store opened next
    # see a service that is completely shut down.
    for thread in threading.enumerate():
        if thread.name == _SIGNAL_SHUTDOWN_THREAD:
            thread.join(_SIGNAL_SHUTDOWN_JOIN_S)


def _note(
    interrupt: Interrupt, service_handler: Any, signum: int, frame: FrameType | None
) -> None:
    if interrupt.signum is None:
        interrupt.signum = signum
    service_handler(signum, frame)
