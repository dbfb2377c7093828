"""A verifiable delay function as a paas program, proven with chiavdf.

The host builds :class:`VdfProgram` objects; paas calls :func:`fetch_input` on a
host thread and ships the resulting dict to a worker of the prover's backend,
where :meth:`VdfProver.prove` squares the class-group generator ``iterations``
times in the group whose discriminant is derived from the challenge, and returns
the Wesolowski proof blob (result form + proof, 200 bytes at 1024 bits). Back in
the host, :func:`verify` checks the blob against the program it was made for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import chiavdf

ROUTING_KEY = "vdf"
DISCRIMINANT_BITS = 1024

# The generator of the class group in chiavdf's compressed form: a leading 0x08
# flags "generator", and the remaining 99 bytes are zero. Every VDF starts here.
GENERATOR = b"\x08" + bytes(99)

# chiavdf stops proving early if a file at this path appears; "" disables that.
_NO_STOP_FILE = ""

# Plain Wesolowski proof: the blob holds y and one proof element, no recursion.
_RECURSION = 0


@dataclass(frozen=True)
class VdfProgram:
    """Run ``iterations`` squarings in the group derived from ``challenge``."""

    routing_key: ClassVar[str] = ROUTING_KEY

    program_id: str
    challenge: bytes
    iterations: int


def make_program(seed: int, index: int, iterations: int) -> VdfProgram:
    """The ``index``-th program of a batch; the same arguments give the same one."""
    challenge = hashlib.sha256(f"paas-demo/vdf/{seed}/{index}".encode()).digest()
    return VdfProgram(
        program_id=f"seed{seed}-{index}-{iterations}it",
        challenge=challenge,
        iterations=iterations,
    )


def fetch_input(program: VdfProgram) -> dict[str, Any]:
    """Input fetcher: the task input as msgpack-friendly values."""
    return {"challenge": program.challenge, "iterations": program.iterations}


@dataclass(frozen=True)
class VdfProver:
    """Proves VDF inputs on ``backend``; stateless, so it needs no setup."""

    backend: str = "vdf"

    def prove(self, task_input: dict[str, Any]) -> bytes:
        return chiavdf.prove(
            task_input["challenge"],
            GENERATOR,
            DISCRIMINANT_BITS,
            task_input["iterations"],
            _NO_STOP_FILE,
        )


def verify(program: VdfProgram, proof: bytes) -> bool:
    """Whether ``proof`` is a valid VDF output and proof for ``program``.

    A blob that is not a proof at all (wrong length, not a group element) is
    simply invalid: False, not an exception.
    """
    discriminant = chiavdf.create_discriminant(program.challenge, DISCRIMINANT_BITS)
    try:
        return chiavdf.verify_n_wesolowski(
            str(discriminant),
            GENERATOR,
            proof,
            program.iterations,
            DISCRIMINANT_BITS,
            _RECURSION,
        )
    except RuntimeError:  # chiavdf's only signal for "cannot deserialize"
        return False
