from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import paas
from paas._sqlite_store import SQLiteTaskStore
from paas._store import TaskRecord

S = paas.TaskStatus

_IMPLEMENTATIONS: dict[str, Callable[[Path], paas.TaskStore]] = {
    "memory": lambda _: paas.InMemoryTaskStore(),
    "sqlite": lambda tmp_path: SQLiteTaskStore(tmp_path / "tasks.db"),
}


@pytest.fixture(params=sorted(_IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[paas.TaskStore]:
    """Each store implementation in turn, so they all pass the same tests."""
    opened = _IMPLEMENTATIONS[request.param](tmp_path)
    yield opened
    opened.close()


def _record(task_id: str = "t1", *, at: float = 1.0) -> TaskRecord:
    return TaskRecord(
        task_id=task_id, program_key="p", backend="native", created_at=at, updated_at=at
    )


def test_create_is_idempotent(store: paas.TaskStore) -> None:
    first, created = store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    again, created_again = store.create(_record())
    assert created and not created_again
    assert first.status is S.PENDING and again.status is S.QUEUED


def test_transition_is_compare_and_set(store: paas.TaskStore) -> None:
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    with pytest.raises(paas.IllegalTransition, match="QUEUED -> PROVING"):
        store.transition("t1", S.PENDING, S.PROVING)
    assert store.get("t1").status is S.QUEUED


def test_illegal_transition_changes_nothing(store: paas.TaskStore) -> None:
    store.create(_record())
    with pytest.raises(paas.IllegalTransition):
        store.transition("t1", S.PENDING, S.PROVING, attempts=9)
    record = store.get("t1")
    assert record.status is S.PENDING and record.attempts == 0


def test_transition_writes_companion_fields_together(store: paas.TaskStore) -> None:
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED)
    after = store.transition("t1", S.QUEUED, S.PROVING, attempts=1, current_attempt=5)
    assert (after.status, after.attempts, after.current_attempt) == (S.PROVING, 1, 5)


def test_identity_fields_cannot_change(store: paas.TaskStore) -> None:
    store.create(_record())
    with pytest.raises(TypeError, match="backend"):
        store.transition("t1", S.PENDING, S.QUEUED, backend="other")


def test_snapshots_are_copies(store: paas.TaskStore) -> None:
    store.create(_record())
    snapshot = store.get("t1")
    snapshot.attempts = 42
    assert store.get("t1").attempts == 0


def test_unknown_task(store: paas.TaskStore) -> None:
    with pytest.raises(paas.TaskNotFound, match="no task with id 'nope'"):
        store.get("nope")
    with pytest.raises(paas.TaskNotFound):
        store.transition("nope", S.PENDING, S.QUEUED)


def test_concurrent_writers_never_both_win(store: paas.TaskStore) -> None:
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


def test_counts_cover_every_status(store: paas.TaskStore) -> None:
    for n in range(3):
        store.create(_record(f"t{n}"))
    store.transition("t0", S.PENDING, S.QUEUED)
    assert store.counts() == {("native", S.PENDING): 2, ("native", S.QUEUED): 1}


def test_query_filters_and_orders_by_last_update(store: paas.TaskStore) -> None:
    for n, (backend, at) in enumerate([("cpu", 3.0), ("gpu", 1.0), ("cpu", 2.0)]):
        store.create(
            TaskRecord(
                task_id=f"t{n}",
                program_key=f"p{n % 2}",
                backend=backend,
                created_at=at,
                updated_at=at,
            )
        )
    store.transition("t2", S.PENDING, S.QUEUED, updated_at=9.0)

    assert [r.task_id for r in store.query()] == ["t2", "t0", "t1"]
    assert [r.task_id for r in store.query(limit=2)] == ["t2", "t0"]
    assert [r.task_id for r in store.query(backend="cpu")] == ["t2", "t0"]
    assert [r.task_id for r in store.query(program="p0")] == ["t2", "t0"]
    assert [r.task_id for r in store.query(status=S.PENDING)] == ["t0", "t1"]
    assert store.query(status=S.QUEUED, backend="gpu") == []


def test_unfinished_lists_live_tasks_oldest_first(store: paas.TaskStore) -> None:
    for n, at in enumerate([3.0, 1.0, 2.0]):
        store.create(_record(f"t{n}", at=at))
    store.transition("t2", S.PENDING, S.PERMANENT_FAILURE)
    assert [r.task_id for r in store.unfinished()] == ["t1", "t0"]


def test_prune_forgets_old_finished_tasks_only(store: paas.TaskStore) -> None:
    for task_id in ("done-old", "done-new", "live-old"):
        store.create(_record(task_id))
    store.transition("done-old", S.PENDING, S.COMPLETED, updated_at=5.0)
    store.transition("done-new", S.PENDING, S.PERMANENT_FAILURE, updated_at=20.0)
    assert store.prune(finished_before=10.0) == 1
    assert sorted(r.task_id for r in store.query()) == ["done-new", "live-old"]


def test_batch_writes_are_visible_after_the_block(store: paas.TaskStore) -> None:
    with store.batch():
        store.create(_record())
        with store.batch():
            store.transition("t1", S.PENDING, S.QUEUED)
    assert store.get("t1").status is S.QUEUED
