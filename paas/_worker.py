"""The worker process: receives assignments, runs the prover, reports back.

One worker serves one backend. It owns three sockets, all created in this process
after start (no zmq context crosses a process boundary):

    task PULL   connect ipc://<dir>/w<id>   Assignment / Shutdown from the supervisor
    result PUSH connect ipc://<dir>/up      Ready, Result, Failure
    beat PUSH   connect ipc://<dir>/up      Heartbeat, from a thread of its own

The worker sits in its own process group, so a Ctrl-C at the terminal reaches the
host but not the provers; it asks the kernel for SIGKILL when its parent dies and
also watches its parent pid, so no prover outlives the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import msgspec
import zmq

from paas import _messages as wire
from paas._errors import PermanentError

_PR_SET_PDEATHSIG = 1


def worker_main(
    worker_id: int,
    backend: str,
    provers: Mapping[str, Any],
    task_endpoint: str,
    result_endpoint: str,
    heartbeat_interval_s: float,
    max_message_bytes: int,
    parent_pid: int,
) -> None:
    """Entry point of a worker process (runs in the child)."""
    _detach_from_terminal_and_parent(parent_pid)
    context = zmq.Context(io_threads=1)
    beat_stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat_loop,
        args=(
            context,
            worker_id,
            result_endpoint,
            heartbeat_interval_s,
            parent_pid,
            beat_stop,
        ),
        name="paas-heartbeat",
        daemon=True,
    )
    tasks = context.socket(zmq.PULL)
    results = context.socket(zmq.PUSH)
    try:
        tasks.connect(task_endpoint)
        results.connect(result_endpoint)
        if not _set_up(provers, worker_id, results):
            return
        beat.start()
        results.send(wire.encode(wire.Ready(worker_id=worker_id, pid=os.getpid())))
        _serve(tasks, results, worker_id, provers, max_message_bytes)
    finally:
        beat_stop.set()
        if beat.is_alive():
            beat.join()
        tasks.close(linger=0)
        results.close(linger=5000)
        context.term()


def _set_up(
    provers: Mapping[str, Any], worker_id: int, results: zmq.Socket[bytes]
) -> bool:
    """Run each prover's optional setup(); on failure tell the supervisor why."""
    try:
        for prover in provers.values():
            setup = getattr(prover, "setup", None)
            if callable(setup):
                setup()
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor, then exit
        report = wire.StartFailed(
            worker_id=worker_id,
            pid=os.getpid(),
            error_type=type(exc).__name__,
            message=str(exc),
            traceback=traceback.format_exc(),
        )
        results.send(wire.encode(report))
        return False
    return True


def _detach_from_terminal_and_parent(parent_pid: int) -> None:
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(70)


def _serve(
    tasks: zmq.Socket[bytes],
    results: zmq.Socket[bytes],
    worker_id: int,
    provers: Mapping[str, Any],
    max_message_bytes: int,
) -> None:
    while True:
        frame = tasks.recv()
        try:
            message = wire.worker_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            print(
                f"paas worker {worker_id}: dropped malformed frame: {exc}",
                file=sys.stderr,
            )
            continue
        if isinstance(message, wire.Shutdown):
            return
        frame = _encode_reply(
            _run_attempt(worker_id, provers, message), max_message_bytes
        )
        # Large proofs go out zero-copy; small frames are cheaper to copy.
        results.send(frame, copy=len(frame) < 65536)  # type: ignore[call-overload]


def _encode_reply(reply: wire.Result | wire.Failure, max_message_bytes: int) -> bytes:
    try:
        frame = wire.encode(reply)
    except (TypeError, ValueError, OverflowError) as exc:
        problem = f"the attempt's reply could not be encoded: {exc}"
    else:
        if len(frame) <= max_message_bytes:
            return frame
        # The supervisor would drop an oversized frame unseen; say why instead.
        problem = (
            f"the reply is {len(frame)} bytes, over ServiceConfig.max_message_bytes "
            f"({max_message_bytes}); raise the limit or return a smaller proof"
        )
    failure = wire.Failure(
        worker_id=reply.worker_id,
        task_id=reply.task_id,
        attempt_id=reply.attempt_id,
        permanent=True,
        error_type="EncodingError",
        message=problem,
        traceback="",
        prove_time_s=reply.prove_time_s,
    )
    return wire.encode(failure)


def _run_attempt(
    worker_id: int, provers: Mapping[str, Any], job: wire.Assignment
) -> wire.Result | wire.Failure:
    started = time.perf_counter()

    def failure(exc: BaseException, permanent: bool, detail: str) -> wire.Failure:
        return wire.Failure(
            worker_id=worker_id,
            task_id=job.task_id,
            attempt_id=job.attempt_id,
            permanent=permanent,
            error_type=type(exc).__name__,
            message=str(exc),
            traceback=detail,
            prove_time_s=time.perf_counter() - started,
        )

    try:
        payload = wire.decode_input(job.input)
        proof = provers[job.program_key].prove(payload)
    except PermanentError as exc:
        return failure(exc, True, traceback.format_exc())
    except BaseException as exc:  # noqa: BLE001 - any other error is transient by contract
        return failure(exc, False, traceback.format_exc())
    elapsed = time.perf_counter() - started

    if isinstance(proof, bytearray | memoryview):
        proof = bytes(proof)
    if not isinstance(proof, bytes):
        error = TypeError(f"prove() returned {type(proof).__name__}, expected bytes")
        return failure(error, True, "")
    return wire.Result(
        worker_id=worker_id,
        task_id=job.task_id,
        attempt_id=job.attempt_id,
        proof=proof,
        prove_time_s=elapsed,
    )


def _heartbeat_loop(
    context: zmq.Context[zmq.Socket[bytes]],
    worker_id: int,
    endpoint: str,
    interval_s: float,
    parent_pid: int,
    stop: threading.Event,
) -> None:
    sock = context.socket(zmq.PUSH)
    sock.connect(endpoint)
    seq = 0
    try:
        while not stop.wait(interval_s):
            if os.getppid() != parent_pid:
                os._exit(70)
            seq += 1
            beat = wire.Heartbeat(worker_id=worker_id, pid=os.getpid(), seq=seq)
            # If the supervisor is not reading, drop this beat; the next one retries.
            with contextlib.suppress(zmq.Again):
                sock.send(wire.encode(beat), zmq.NOBLOCK)
    finally:
        sock.close(linger=0)
