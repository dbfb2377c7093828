from __future__ import annotations

import threading

import pytest

import paas
from paas._store import TaskRecord

S = paas.TaskStatus


def _record(task_id: str = "t1") -> TaskRecord:
    return TaskRecord(
        task_id=task_id, program_key="p", backend="native", created_at=1.0, updated_at=1.0
    )


def test_create_is_idempotent() -> None:
    store = paas.InMemoryTaskStore()
    first, created = store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    again, created_again = store.create(_record())
    assert created and not created_again
    assert first.status is S.PENDING and again.status is S.QUEUED


def test_transition_is_compare_and_set() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    with pytest.raises(paas.IllegalTransition, match="QUEUED -> PROVING"):
        store.transition("t1", S.PENDING, S.PROVING)
    assert store.get("t1").status is S.QUEUED


def test_illegal_transition_changes_nothing() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    with pytest.raises(paas.IllegalTransition):
        store.transition("t1", S.PENDING, S.PROVING, attempts=9)
    record = store.get("t1")
    assert record.status is S.PENDING and record.attempts == 0


def test_transition_writes_companion_fields_together() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    after = store.transition("t1", S.QUEUED, S.PROVING, attempts=1, current_attempt=5)
    assert (after.status, after.attempts, after.current_attempt) == (S.PROVING, 1, 5)


def test_identity_fields_cannot_change() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    with pytest.raises(TypeError, match="backend"):
        store.transition("t1", S.PENDING, S.QUEUED, backend="other")


def test_snapshots_are_copies() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    snapshot = store.get("t1")
    snapshot.attempts = 42
    assert store.get("t1").attempts == 0


def test_unknown_task() -> None:
    store = paas.InMemoryTaskStore()
    with pytest.raises(paas.TaskNotFound, match="no task with id 'nope'"):
        store.get("nope")
    with pytest.raises(paas.TaskNotFound):
        store.transition("nope", S.PENDING, S.QUEUED)


def test_concurrent_writers_never_both_win() -> None:
    store = paas.InMemoryTaskStore()
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait()
        try:
            store.transition("t1", S.QUEUED, S.PROVING, current_attempt=n)
        except paas.IllegalTransition:
            return
        winners.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get("t1").current_attempt == winners[0]


def test_counts_cover_every_status() -> None:
    store = paas.InMemoryTaskStore()
    for n in range(3):
        store.create(_record(f"t{n}"))
    store.transition("t0", S.PENDING, S.QUEUED)
    assert store.counts() == {("native", S.PENDING): 2, ("native", S.QUEUED): 1}
