"""Program registrations: what a routing key maps to, checked when registered.

A registration ties a program key to its input fetcher, one prover per backend,
a proof store, an optional deadline and an optional program type. Everything
that can be checked before launch is checked here, so mistakes surface at
``register()`` with the program named, not inside a worker process.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dill

from paas._config import check_seconds
from paas._errors import ConfigError
from paas._proofs import ProofStore


class Program(Protocol):
    """What ``submit_task`` needs of a program: which registration it belongs to.

    A ``program_id`` attribute, if present, makes the task id deterministic, so
    submitting the same program to the same backend twice returns the same task.
    """

    routing_key: str


@dataclass(frozen=True)
class Prover:
    """A prover built from plain functions.

    ``prove`` runs in a worker process of ``backend``; ``setup``, if given, runs
    once in each worker before its first task (load keys, warm caches). Both must
    be picklable by dill: module-level functions always are.
    """

    backend: str
    prove: Callable[[Any], bytes]
    setup: Callable[[], None] | None = None


@dataclass(frozen=True)
class Registration:
    program_key: str
    input_fetcher: Callable[[Any], Any]
    provers: Mapping[str, Any]
    proof_store: ProofStore
    deadline_s: float | None
    program_type: type | None


def check_deadline(deadline_s: float | None) -> None:
    check_seconds("deadline_s", deadline_s, allow_zero=False)


def check_proof_store(store: object) -> None:
    if not (
        callable(getattr(store, "put", None)) and callable(getattr(store, "get", None))
    ):
        raise ConfigError(f"proof_store must have put() and get(), got {store!r}")


def check_provers(program_key: str, prover: Any) -> dict[str, Any]:
    """One prover per backend, each shippable to a worker process by dill."""
    candidates = list(prover) if isinstance(prover, list | tuple) else [prover]
    if not candidates:
        raise ConfigError(f"program {program_key!r}: prover list is empty")
    provers: dict[str, Any] = {}
    for candidate in candidates:
        backend = getattr(candidate, "backend", None)
        if not isinstance(backend, str) or not backend:
            raise ConfigError(
                f"program {program_key!r}: prover {candidate!r} needs a non-empty str "
                "'backend' attribute"
            )
        if not callable(getattr(candidate, "prove", None)):
            raise ConfigError(
                f"program {program_key!r}: prover {candidate!r} has no prove()"
            )
        if backend in provers:
            raise ConfigError(
                f"program {program_key!r}: two provers for backend {backend!r}"
            )
        try:
            dill.dumps(candidate)
        except Exception as exc:
            raise ConfigError(
                f"program {program_key!r}: prover for backend {backend!r} cannot be "
                f"shipped to a worker process (dill could not pickle it: {exc})"
            ) from exc
        provers[backend] = candidate
    return provers


def provers_by_backend(
    registrations: Mapping[str, Registration], pools: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """Group provers by backend; every backend needs a pool and every pool a prover."""
    grouped: dict[str, dict[str, Any]] = {}
    for reg in registrations.values():
        for backend, prover in reg.provers.items():
            if backend not in pools:
                raise ConfigError(
                    f"program {reg.program_key!r} has a prover for backend "
                    f"{backend!r}, but config.pools has no pool for it"
                )
            grouped.setdefault(backend, {})[reg.program_key] = prover
    unused = sorted(set(pools) - set(grouped))
    if unused:
        raise ConfigError(f"config.pools names backends no prover uses: {unused}")
    return grouped


def task_id_for(program: Program, backend: str, idempotency_key: str | None) -> str:
    """Deterministic from the key or (routing key, program id, backend), else random."""
    if idempotency_key is not None:
        material = f"key\0{idempotency_key}"
    else:
        program_id = getattr(program, "program_id", None)
        if program_id is None:
            return uuid.uuid4().hex
        material = f"{program.routing_key}\0{program_id}\0{backend}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]
