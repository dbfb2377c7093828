"""A Groth16 proof of the circom circuit ``chain.circom``, as a paas program.

    host: setup_keys(dir)   compile chain.circom, run the (single-party) setup,
                            save the proving key to dir, keep the verifier
    host: fetch_input       {"x": .., "k": ..} for one Groth16Program
    worker: setup()         load the proving key file once per worker process
    worker: prove()         witness + proof, 256 bytes
    host: verify()          recompute y = Chain(x, k) in Python, check [y, k]

Licensing: groth16py is GPL-3.0 and paas is Apache-2.0, so groth16py is imported
only inside the functions below (never at module import time) and nowhere else;
importing paas, paas.cli or this module does not load it.

Known limitation: the setup is single-party, so whoever ran it could forge
proofs. That is fine for a demo; real deployments import a ceremony key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from paas import PermanentError

if TYPE_CHECKING:
    import groth16py

ROUTING_KEY = "groth16"
CIRCUIT_FILE = "chain.circom"
KEY_FILE = "chain.pk"

# The order of the BN254 scalar field (circom's default prime); all circuit
# arithmetic is modulo this. In decimal, to compare with other sources:
# 21888242871839275222246405745257275088548364400416034343698204186575808495617
FIELD_MODULUS = 0x30644E72E131A029B85045B68181585D2833E84879B9709143E1F593F0000001

# Inputs stay below 2**62 so they travel as plain msgpack ints (at most 64 bits).
_INPUT_BITS = 62

_MAIN_COMPONENT = re.compile(r"component\s+main\b[^=]*=\s*Chain\((\d+)\)")


def unavailable_reason() -> str | None:
    """Why groth16py cannot be used here, or None if it can."""
    try:
        import groth16py  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Groth16Program:
    """Prove knowledge of a private ``x`` that leads to ``Chain(x, k)``, public k."""

    routing_key: ClassVar[str] = ROUTING_KEY

    program_id: str
    x: int
    k: int


def make_program(seed: int, index: int) -> Groth16Program:
    """The ``index``-th program of a batch; the same arguments give the same one."""
    digest = hashlib.sha256(f"paas-demo/groth16/{seed}/{index}".encode()).digest()
    x = int.from_bytes(digest[:8], "big") >> (64 - _INPUT_BITS)
    k = int.from_bytes(digest[8:16], "big") >> (64 - _INPUT_BITS)
    return Groth16Program(program_id=f"seed{seed}-{index}", x=x, k=k)


def fetch_input(program: Groth16Program) -> dict[str, int]:
    """Input fetcher: the circuit's input signals by name."""
    return {"x": program.x, "k": program.k}


def chain_output(x: int, k: int, rounds: int) -> int:
    """The circuit's output ``y``, computed the slow way, in Python."""
    state = x % FIELD_MODULUS
    for i in range(rounds):
        base = (state + k + i) % FIELD_MODULUS
        state = pow(base, 3, FIELD_MODULUS)
    return state


@dataclass(frozen=True)
class CircuitKeys:
    """What the host keeps after setup: the key file for workers, the verifier."""

    key_path: Path
    rounds: int
    verifier: groth16py.Verifier


def setup_keys(directory: Path) -> CircuitKeys:
    """Compile ``chain.circom``, run the setup, save the proving key under it."""
    import groth16py

    source = resources.files("paas_examples").joinpath(CIRCUIT_FILE)
    rounds = _rounds_of(source.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE

    with resources.as_file(source) as circuit_path, _quiet_stdout():
        proving_key, verifying_key = groth16py.setup_circom(str(circuit_path))
    proving_key.save(str(key_path))
    return CircuitKeys(key_path, rounds, groth16py.Verifier(verifying_key))


def _rounds_of(circuit: str) -> int:
    match = _MAIN_COMPONENT.search(circuit)
    if match is None:
        raise ValueError(f"{CIRCUIT_FILE} has no `component main = Chain(n)` line")
    return int(match.group(1))


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to a temp file; replay it to stderr on error.

    The circom compiler inside groth16py prints its statistics straight to fd 1,
    below Python's sys.stdout, so only swapping the descriptor silences it.
    """
    sys.stdout.flush()
    saved_fd = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            yield
        except BaseException:
            os.dup2(saved_fd, 1)
            capture.seek(0)
            os.write(2, capture.read())
            raise
        finally:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


class Groth16Prover:
    """Proves Groth16 inputs on ``backend`` with the key saved by setup_keys().

    The key is loaded in :meth:`setup`, once per worker process, not shipped with
    the prover: it is megabytes, and a loaded key cannot be pickled anyway.
    """

    def __init__(self, key_path: Path, backend: str = "groth16") -> None:
        self.key_path = str(key_path)
        self.backend = backend
        self._proving_key: groth16py.ProvingKey | None = None

    def setup(self) -> None:
        import groth16py

        self._proving_key = groth16py.ProvingKey.load(self.key_path)

    def prove(self, task_input: dict[str, Any]) -> bytes:
        import groth16py

        if self._proving_key is None:
            self.setup()  # paas calls setup() first; this covers direct use
        assert self._proving_key is not None
        try:
            return groth16py.prove(self._proving_key, task_input)
        except groth16py.WitnessError as exc:
            # The inputs violate the circuit; proving them again cannot help. The
            # message leaves the inputs out: x is the private witness.
            raise PermanentError(f"no witness for these inputs: {exc}") from exc


def verify(keys: CircuitKeys, program: Groth16Program, proof: bytes) -> bool:
    """Whether ``proof`` shows ``Chain(x, k) = y`` for the program's x and k.

    A blob that is not a proof at all (wrong length, points off the curve) is
    simply invalid: False, not an exception.
    """
    import groth16py

    y = chain_output(program.x, program.k, keys.rounds)
    try:
        # Public signals in circom order: outputs first, then public inputs.
        return keys.verifier.verify(proof, [y, program.k])
    except groth16py.EncodingError:
        return False
