"""The supervisor's end of the wire: one inbox, one wake-up pipe, one poller.

    ipc dir (0700, short path)   <dir>/up       inbox PULL, every worker PUSHes here
                                 <dir>/w<id>    per-worker PUSH (bound by WorkerProcess)
    wake pipe                    host threads write a byte after posting a command
    poller                       inbox + wake pipe + every worker's process sentinel

Only the supervisor thread uses the sockets; ``wake`` is the one call other
threads make. ``close`` releases the sockets, the context, the pipe and the dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import zmq

from paas import _messages as wire

_MAX_IPC_DIR_CHARS = 80
_OWNER = "owner"


class SupervisorTransport:
    """Sockets and fds of the supervisor, created together and released together."""

    def __init__(self, max_message_bytes: int) -> None:
        _remove_orphaned_dirs()
        self.ipc_dir = _private_ipc_dir()
        try:
            self._open(max_message_bytes)
        except BaseException:
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
            raise

    def _open(self, max_message_bytes: int) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        self._inbox = self.context.socket(zmq.PULL)
        self._inbox.setsockopt(zmq.LINGER, 0)
        # Frames over the limit are counted and dropped here; ZeroMQ itself drops
        # (uncounted, by closing the peer's connection) anything over four times
        # the limit, so a hostile peer cannot make the supervisor buffer an
        # unbounded message.
        self._max_message_bytes = max_message_bytes
        self._inbox.setsockopt(zmq.MAXMSGSIZE, 4 * max_message_bytes)
        self.inbox_endpoint = f"ipc://{self.ipc_dir / 'up'}"
        self._inbox.bind(self.inbox_endpoint)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller = zmq.Poller()
        self.poller.register(self._inbox, zmq.POLLIN)
        self.poller.register(self._wake_r, zmq.POLLIN)

    def wake(self) -> None:
        """Make the next (or current) poll return; safe from any thread."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already
        except OSError:
            pass  # closed: the loop has stopped

    def poll(self, timeout_ms: int) -> Mapping[Any, int]:
        ready = dict(self.poller.poll(timeout_ms))
        if self._wake_r in ready:
            _drain_pipe(self._wake_r)
        return ready

    def inbox_ready(self, ready: Mapping[Any, int]) -> bool:
        return self._inbox in ready

    def receive(self, limit: int) -> Iterator[wire.ToSupervisor | msgspec.DecodeError]:
        """Up to ``limit`` waiting frames, decoded; a bad frame yields its error."""
        for _ in range(limit):
            try:
                frame = self._inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frame) > self._max_message_bytes:
                yield msgspec.DecodeError(
                    f"{len(frame)} byte frame is over max_message_bytes "
                    f"({self._max_message_bytes})"
                )
                continue
            try:
                yield wire.supervisor_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                yield msgspec.DecodeError(f"{len(frame)} byte frame: {exc}")

    def close(self) -> None:
        self._inbox.close(linger=0)
        self.context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self.ipc_dir, ignore_errors=True)


def _ipc_base() -> str:
    base = tempfile.gettempdir()
    return "/tmp" if len(base) > _MAX_IPC_DIR_CHARS else base


def _private_ipc_dir() -> Path:
    """A 0700 temp dir with a path short enough for ipc:// socket names.

    It holds an ``owner`` file with this process's pid, so that a later host can
    remove the dir if this one is killed before it cleans up.
    """
    path = Path(tempfile.mkdtemp(prefix="paas-", dir=_ipc_base()))
    (path / _OWNER).write_text(str(os.getpid()))
    return path


def _remove_orphaned_dirs() -> None:
    """Remove ipc dirs left by hosts that died (SIGKILL) without cleaning up."""
    for path in Path(_ipc_base()).glob("paas-*"):
        try:
            owner = int((path / _OWNER).read_text())
            if path.stat().st_uid != os.getuid():
                continue
        except (OSError, ValueError):
            continue  # not ours, or not fully created yet
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
