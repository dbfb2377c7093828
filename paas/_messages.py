"""Wire protocol between the supervisor and its workers.

Every frame is one msgpack-encoded msgspec Struct from a tagged union; nothing is
pickled on the wire. The task input travels as ``msgspec.Raw``: it is encoded once
when the input is fetched (which is also where an unencodable input is caught) and
decoded only inside the worker.

    supervisor --Assignment/Shutdown--> worker        (one PUSH socket per worker)
    worker --Ready/StartFailed/Result/Failure--> supervisor  (shared PULL socket)
    worker heartbeat thread --Heartbeat--> supervisor (same PULL socket)
"""

from __future__ import annotations

from typing import Any

import msgspec

from paas._errors import EncodingError


class Ready(msgspec.Struct, tag="ready", frozen=True):
    """The worker finished start-up and can take its first task (its first credit)."""

    worker_id: int
    pid: int


class Heartbeat(msgspec.Struct, tag="heartbeat", frozen=True):
    worker_id: int
    pid: int
    seq: int


class Assignment(msgspec.Struct, tag="assignment", frozen=True):
    task_id: str
    attempt_id: int
    program_key: str
    input: msgspec.Raw


class Result(msgspec.Struct, tag="result", frozen=True):
    """A proof; also returns the worker's credit."""

    worker_id: int
    task_id: str
    attempt_id: int
    proof: bytes
    prove_time_s: float


class Failure(msgspec.Struct, tag="failure", frozen=True):
    """A failed attempt; also returns the worker's credit."""

    worker_id: int
    task_id: str
    attempt_id: int
    permanent: bool
    error_type: str
    message: str
    traceback: str
    prove_time_s: float


class StartFailed(msgspec.Struct, tag="start_failed", frozen=True):
    """The worker could not get ready (a prover's setup() raised); it exits next."""

    worker_id: int
    pid: int
    error_type: str
    message: str
    traceback: str


class Shutdown(msgspec.Struct, tag="shutdown", frozen=True):
    pass


ToSupervisor = Ready | Heartbeat | Result | Failure | StartFailed
ToWorker = Assignment | Shutdown

_encoder = msgspec.msgpack.Encoder()
_any_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
supervisor_decoder: msgspec.msgpack.Decoder[ToSupervisor] = msgspec.msgpack.Decoder(
    ToSupervisor
)
worker_decoder: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def encode_input(value: object) -> msgspec.Raw:
    """Encode a task input once; raise :class:`EncodingError` if it cannot travel."""
    try:
        return msgspec.Raw(_encoder.encode(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(
            f"task input of type {type(value).__name__} cannot be encoded as msgpack "
            f"({exc}); inputs must be built from bytes, str, int, float, bool, None, "
            "list, tuple, dict or msgspec Structs"
        ) from exc


def decode_input(raw: msgspec.Raw) -> Any:
    return _any_decoder.decode(raw)
