"""Random frames at the supervisor's inbox are counted and dropped, never fatal."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
import zmq
from helpers import DEADLOCK_GUARD_S, launch, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paas
from paas.testing import Job

ints = st.integers(-(2**63), 2**63 - 1)
frames = st.one_of(
    st.binary(max_size=256),
    st.builds(
        msgspec.msgpack.encode,
        st.dictionaries(st.sampled_from(["type", "worker_id", "pid", "seq"]), ints),
    ),
    st.builds(
        msgspec.msgpack.encode,
        st.fixed_dictionaries(
            {"type": st.sampled_from(["ready", "heartbeat", "result", "failure"])},
            optional={"worker_id": st.integers(10**6, 10**7), "pid": ints},
        ),
    ),
)


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[paas.ServiceHandle, zmq.Socket[bytes]]]:
    with launch() as handle:
        context = zmq.Context()
        sock = context.socket(zmq.PUSH)
        sock.connect(handle._supervisor.inbox_endpoint)
        yield handle, sock
        sock.close(linger=0)
        context.term()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames, min_size=1, max_size=5))
def test_fuzzed_frames_are_counted_and_dropped(
    inbox: tuple[paas.ServiceHandle, zmq.Socket[bytes]], batch: list[bytes]
) -> None:
    handle, sock = inbox
    before = handle.metrics()["frames_dropped"]
    for frame in batch:
        sock.send(frame)
    wait_until(
        lambda: handle.metrics()["frames_dropped"] == before + len(batch),
        f"{len(batch)} frames counted as dropped",
        handle.metrics,
    )


def test_service_still_serves_after_fuzzing(
    inbox: tuple[paas.ServiceHandle, zmq.Socket[bytes]],
) -> None:
    handle, _ = inbox
    job = Job("after-fuzz", {"do": "echo", "data": b"alive"})
    assert handle.execute(job, "native", DEADLOCK_GUARD_S) == b"alive"
