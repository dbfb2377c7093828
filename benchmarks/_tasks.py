"""The functions that run inside worker processes, shared by every contender.

They sit at module level in a module with stdlib imports only: spawned workers
(multiprocessing, loky, paas) import this module to find them, and paas ships a
prover to its workers by reference with dill. Each returns bytes because a paas
prover must, so every contender moves the same payload. Arguments arrive as
lists rather than tuples under paas (msgpack has no tuple), so unpack, never
compare, them.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

VDF_DISCRIMINANT_BITS = 1024
VDF_INITIAL_FORM = b"\x08" + bytes(99)
# Long enough that only the benchmark's SIGKILL ends it, short enough that a
# victim whose kill went astray cannot outlive a trial's hard timeout by much.
VICTIM_SLEEP_S = 60.0


def noop(index: int) -> bytes:
    """The cheapest possible task: measures the pool, not the work."""
    return b""


def nap(seconds: float) -> bytes:
    """Sleep, then return the worker's pid, so a warm-up can count live workers."""
    time.sleep(seconds)
    return str(os.getpid()).encode()


def block(seconds: float) -> bytes:
    """Occupy a worker, so tasks submitted behind it stay queued."""
    time.sleep(seconds)
    return b""


def vdf_challenge(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "big")).digest()


def vdf_proof(job: Any) -> bytes:
    """A real proof: a chiavdf Wesolowski VDF over ``job = (index, iterations)``."""
    import chiavdf  # imported here so spawning a worker for other tasks stays cheap

    index, iterations = job
    proof: bytes = chiavdf.prove(
        vdf_challenge(index),
        VDF_INITIAL_FORM,
        VDF_DISCRIMINANT_BITS,
        iterations,
        "",
    )
    return proof


def crash_probe(job: Any) -> bytes:
    """``job = (marker, nap_s)``: a nap, or with a marker path, the crash victim.

    The victim publishes its pid at ``marker`` (write then rename, so a reader
    never sees half a pid) and sleeps until the benchmark SIGKILLs it. A pool that
    runs the task again finds the marker and returns at once.
    """
    marker, nap_s = job
    if not marker:
        return nap(nap_s)
    path = Path(marker)
    if path.exists():
        return b"requeued"
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(str(os.getpid()))
    staging.rename(path)
    time.sleep(VICTIM_SLEEP_S)
    return b"survived"
