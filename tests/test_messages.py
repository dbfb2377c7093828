from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paas
from paas import _messages as wire

inputs = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(inputs)
def test_task_inputs_round_trip_through_an_assignment(value: object) -> None:
    job = wire.Assignment(
        task_id="t", attempt_id=7, program_key="p", input=wire.encode_input(value)
    )
    decoded = wire.worker_decoder.decode(wire.encode(job))
    assert isinstance(decoded, wire.Assignment)
    assert wire.decode_input(decoded.input) == value


@pytest.mark.parametrize(
    "message",
    [
        wire.Ready(worker_id=1, pid=2),
        wire.Heartbeat(worker_id=1, pid=2, seq=3),
        wire.Result(
            worker_id=1, task_id="t", attempt_id=4, proof=b"\0" * 9, prove_time_s=0.5
        ),
        wire.Failure(
            worker_id=1,
            task_id="t",
            attempt_id=4,
            permanent=True,
            error_type="ValueError",
            message="m",
            traceback="tb",
            prove_time_s=0.1,
        ),
    ],
)
def test_supervisor_messages_round_trip(message: msgspec.Struct) -> None:
    assert wire.supervisor_decoder.decode(wire.encode(message)) == message


def test_unencodable_input_gets_a_clear_error() -> None:
    with pytest.raises(
        paas.EncodingError,
        match="task input of type dict cannot be encoded.*type object is unsupported",
    ):
        wire.encode_input({"x": object()})


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        b"random bytes \x00\xff",
        msgspec.msgpack.encode({"type": "ready"}),
        msgspec.msgpack.encode({"type": "nope", "worker_id": 1}),
        msgspec.msgpack.encode([1, 2, 3]),
        wire.encode(wire.Shutdown()),
        wire.encode(wire.Ready(worker_id=1, pid=2))[:-1],
    ],
)
def test_malformed_or_wrong_type_frames_fail_to_decode(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        wire.supervisor_decoder.decode(frame)
