"""SQLiteTaskStore: what only a file shows (reopening, foreign files, read-only
readers, transactions). Behaviour shared with the in-memory store is in test_store."""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from strategies import statuses

import paas
from paas import _sqlite_store as sqlite_store_module
from paas._sqlite_store import SQLiteTaskStore
from paas._store import TaskRecord

S = paas.TaskStatus


def _record(task_id: str = "t1", *, at: float = 1.0) -> TaskRecord:
    return TaskRecord(
        task_id=task_id, program_key="p", backend="native", created_at=at, updated_at=at
    )


def _ids(records: list[TaskRecord]) -> list[str]:
    return [r.task_id for r in records]


# -- the store against a dict, step by step --------------------------------------------

task_ids = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=6))
# Few distinct times, so ties in the ordering of query() and unfinished() happen.
times = st.sampled_from([0.0, 1.0, 2.5, 1e9])
maybe_text = st.none() | st.text(max_size=20)
maybe_float = st.none() | st.floats(allow_nan=False)
maybe_int = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
maybe_input = st.none() | st.binary(max_size=64).map(msgspec.Raw)
counters = st.sets(st.sampled_from(["attempts", "retries", "blocked_checks"]))


@st.composite
def companion_changes(draw: st.DrawFn) -> dict[str, Any]:
    """Fields a transition writes with the status; the machine bumps the counters."""
    return {
        "updated_at": draw(times),
        "last_error_message": draw(maybe_text),
        "retry_after": draw(maybe_float),
        "current_attempt": draw(maybe_int),
        "input": draw(maybe_input),
    }


class StoreMachine(RuleBasedStateMachine):
    """SQLiteTaskStore must behave like a dict of records guarded by the table."""

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="paas-store-"))
        self.path = self.directory / "tasks.db"
        self.store = SQLiteTaskStore(self.path)
        self.model: dict[str, TaskRecord] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory)

    @rule(
        target=tasks,
        task_id=task_ids,
        backend=st.sampled_from(["cpu", "gpu"]),
        at=times,
    )
    def create(self, task_id: str, backend: str, at: float) -> str:
        record = TaskRecord(
            task_id=task_id,
            program_key="p",
            backend=backend,
            created_at=at,
            updated_at=at,
        )
        stored, created = self.store.create(record)
        assert created == (task_id not in self.model)
        if created:
            self.model[task_id] = record
        assert stored == self.model[task_id]
        return task_id

    @rule(
        task_id=tasks,
        data=st.data(),
        changes=companion_changes(),
        bump=counters,
        in_batch=st.booleans(),
    )
    def advance(
        self,
        task_id: str,
        data: st.DataObject,
        changes: dict[str, Any],
        bump: set[str],
        in_batch: bool,
    ) -> None:
        """A move the table allows from where the task is (if it still exists)."""
        before = self.model.get(task_id)
        current = S.PENDING if before is None else before.status
        allowed = sorted(paas.ALLOWED_TRANSITIONS[current], key=lambda s: s.value)
        new = data.draw(st.sampled_from(allowed or list(S)))
        with self.store.batch() if in_batch else contextlib.nullcontext():
            self._attempt(task_id, current, new, changes, bump)

    @rule(
        task_id=tasks,
        expected=statuses,
        new=statuses,
        changes=companion_changes(),
        bump=counters,
    )
    def transition(
        self, task_id: str, expected: S, new: S, changes: dict[str, Any], bump: set[str]
    ) -> None:
        """Any pair at all, so mostly one the table or the current status refuses."""
        self._attempt(task_id, expected, new, changes, bump)

    def _attempt(
        self, task_id: str, expected: S, new: S, changes: dict[str, Any], bump: set[str]
    ) -> None:
        before = self.model.get(task_id)
        if before is None:
            with pytest.raises(paas.TaskNotFound):
                self.store.transition(task_id, expected, new, **changes)
            return
        # Counters only ever go up, as the supervisor moves them.
        changes |= {name: getattr(before, name) + 1 for name in bump}
        if (
            before.status is not expected
            or new not in paas.ALLOWED_TRANSITIONS[expected]
        ):
            with pytest.raises(paas.IllegalTransition) as refused:
                self.store.transition(task_id, expected, new, **changes)
            assert refused.value.current is before.status
            assert self.store.get(task_id) == before
            return
        after = self.store.transition(task_id, expected, new, **changes)
        self.model[task_id] = msgspec.structs.replace(before, status=new, **changes)
        assert after == self.model[task_id]

    @rule(task_id=tasks, expected=statuses, new=statuses)
    def transition_rolled_back(self, task_id: str, expected: S, new: S) -> None:
        with pytest.raises(RuntimeError), self.store.batch():
            with contextlib.suppress(paas.IllegalTransition, paas.TaskNotFound):
                self.store.transition(task_id, expected, new, attempts=10**6)
            raise RuntimeError("abandon the batch")

    @rule(finished_before=times)
    def prune(self, finished_before: float) -> None:
        doomed = [
            task_id
            for task_id, r in self.model.items()
            if r.status.is_terminal and r.updated_at < finished_before
        ]
        for task_id in doomed:
            del self.model[task_id]
        assert self.store.prune(finished_before) == len(doomed)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = SQLiteTaskStore(self.path)

    @invariant()
    def matches_model(self) -> None:
        by_update = sorted(
            self.model.values(), key=lambda r: r.updated_at, reverse=True
        )
        assert self.store.query() == by_update
        by_creation = sorted(self.model.values(), key=lambda r: r.created_at)
        assert self.store.unfinished() == [
            r for r in by_creation if not r.status.is_terminal
        ]
        assert self.store.counts() == Counter((r.backend, r.status) for r in by_update)


StoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
test_store_matches_model = StoreMachine.TestCase


# -- opening files ---------------------------------------------------------------------


def _foreign_tables(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()


def _foreign_application(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.close()


def _foreign_wal_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE tasks (id TEXT)")
    conn.commit()
    conn.close()


def _newer_schema(path: Path) -> None:
    SQLiteTaskStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_foreign_tables, r"another application .*'users'"),
        (_foreign_application, "application_id=42"),
        (_foreign_wal_tables, r"another application .*'tasks'"),
        (_newer_schema, "schema version 99"),
    ],
)
def test_other_sqlite_files_are_refused_untouched(
    tmp_path: Path, make: Any, match: str
) -> None:
    path = tmp_path / "other.db"
    make(path)
    before = path.read_bytes()
    files_before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(paas.StoreError, match=match) as refused:
        SQLiteTaskStore(path)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before


def test_random_bytes_are_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(random.Random(7).randbytes(8192))
    before = path.read_bytes()
    with pytest.raises(paas.StoreError, match="not an SQLite database"):
        SQLiteTaskStore(path)
    assert path.read_bytes() == before


def test_corrupt_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    SQLiteTaskStore(path).close()
    corrupt = bytearray(path.read_bytes())
    corrupt[100:3000] = random.Random(7).randbytes(2900)  # page 1 holds the schema
    path.write_bytes(corrupt)
    with pytest.raises(paas.StoreError, match="corrupt"):
        SQLiteTaskStore(path)
    assert path.read_bytes() == corrupt


def test_missing_file_and_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tasks.db"
    SQLiteTaskStore(path).close()
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    path.touch()
    store = SQLiteTaskStore(path)
    store.create(_record())
    assert store.get("t1") == _record()
    store.close()


def test_schema_has_a_column_per_record_field(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    SQLiteTaskStore(path).close()
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(tasks)")}
    conn.close()
    assert tuple(columns) == TaskRecord.__struct_fields__
    assert {
        "tasks_by_status",
        "tasks_by_backend_status",
        "tasks_by_updated_at",
    } <= indexes


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SQLiteTaskStore(path)
    store.create(_record())
    store.transition("t1", S.PENDING, S.QUEUED, input=msgspec.Raw(b"\x00in"))
    moved = store.transition(
        "t1", S.QUEUED, S.PROVING, attempts=1, current_attempt=3, retry_after=None
    )
    store.close()

    reopened = SQLiteTaskStore(path)
    assert reopened.get("t1") == moved
    assert reopened.get("t1").input == msgspec.Raw(b"\x00in")
    reopened.close()


# -- read-only readers -----------------------------------------------------------------


def test_read_only_sees_committed_rows_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    writer = SQLiteTaskStore(path)
    writer.create(_record("t1"))
    reader = SQLiteTaskStore(path, read_only=True)
    writer.create(_record("t2"))
    assert _ids(reader.query()) == ["t1", "t2"]

    with pytest.raises(paas.StoreError, match="read-only"):
        reader.create(_record("t3"))
    with pytest.raises(paas.StoreError, match="read-only"):
        reader.transition("t1", S.PENDING, S.QUEUED)
    with pytest.raises(paas.StoreError, match="read-only"):
        reader.prune(1e9)
    assert writer.get("t1").status is S.PENDING
    reader.close()
    writer.close()


def test_read_only_does_not_create_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(paas.StoreError, match="does not exist"):
        SQLiteTaskStore(path, read_only=True)
    assert not path.exists()


# -- batches and failures --------------------------------------------------------------


def test_batch_commits_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    writer = SQLiteTaskStore(path)
    reader = SQLiteTaskStore(path, read_only=True)
    with writer.batch():
        writer.create(_record("t1"))
        writer.transition("t1", S.PENDING, S.QUEUED)
        assert writer.get("t1").status is S.QUEUED
        assert reader.query() == []
    assert reader.get("t1").status is S.QUEUED
    reader.close()
    writer.close()


def test_batch_rolls_back_on_exception(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    store.create(_record("t1"))
    with pytest.raises(RuntimeError), store.batch():
        store.create(_record("t2"))
        store.transition("t1", S.PENDING, S.QUEUED)
        raise RuntimeError("boom")
    assert _ids(store.query()) == ["t1"]
    assert store.get("t1").status is S.PENDING
    store.close()


def test_nested_batch_joins_the_outer_one(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SQLiteTaskStore(path)
    reader = SQLiteTaskStore(path, read_only=True)
    with store.batch():
        store.create(_record("kept"))
        with store.batch():
            store.create(_record("inner"))
        with pytest.raises(RuntimeError), store.batch():
            store.create(_record("undone"))
            raise RuntimeError("only the inner block")
        assert reader.query() == []
    assert sorted(_ids(reader.query())) == ["inner", "kept"]
    reader.close()
    store.close()


def test_other_threads_never_join_a_batch(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    started = threading.Event()

    def create_elsewhere() -> None:
        started.set()
        store.create(_record("other"))

    other = threading.Thread(target=create_elsewhere)
    with pytest.raises(RuntimeError), store.batch():
        store.create(_record("mine"))
        other.start()
        started.wait()
        raise RuntimeError("roll back my writes only")
    other.join()
    assert _ids(store.query()) == ["other"]
    store.close()


def test_failed_write_changes_nothing(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    store.create(_record())
    with pytest.raises(paas.StoreError, match=r"moving task 't1'.*tasks\.db") as failed:
        store.transition("t1", S.PENDING, S.QUEUED, retry_after=2.0, attempts=None)
    assert isinstance(failed.value.__cause__, sqlite3.IntegrityError)
    assert store.get("t1") == _record()
    store.close()


def test_failed_write_rolls_back_the_whole_batch(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    store.create(_record("t1"))
    with pytest.raises(paas.StoreError, match="batch rolled back"), store.batch():
        store.create(_record("t2"))
        with pytest.raises(paas.StoreError):
            store.transition("t1", S.PENDING, S.QUEUED, last_error_message=object())
        with pytest.raises(paas.StoreError, match="earlier write in this batch"):
            store.create(_record("t3"))
        with pytest.raises(paas.StoreError, match="earlier write"), store.batch():
            store.create(_record("t3"))
    assert _ids(store.query()) == ["t1"]

    with store.batch():  # the store works again after the failed batch
        store.create(_record("t4"))
    assert sorted(_ids(store.query())) == ["t1", "t4"]
    store.close()


def test_use_after_close_raises(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(paas.StoreError, match="closed"):
        store.get("t1")
    with pytest.raises(paas.StoreError, match="closed"):
        store.create(_record())
    with pytest.raises(paas.StoreError, match="closed"), store.batch():
        pass


def test_close_inside_batch_is_refused(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    with store.batch():
        store.create(_record())
        with pytest.raises(paas.StoreError, match="inside batch"):
            store.close()
    assert store.get("t1") == _record()
    store.close()


def test_store_of_another_record_shape_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    SQLiteTaskStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE tasks ADD COLUMN surplus TEXT")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(paas.StoreError, match=r"unknown columns \['surplus'\]"):
        SQLiteTaskStore(path)
    assert path.read_bytes() == before


def test_a_second_writer_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    first = SQLiteTaskStore(tmp_path / "tasks.db")
    with pytest.raises(paas.StoreError, match="in use by another writer"):
        SQLiteTaskStore(tmp_path / "tasks.db")
    reader = SQLiteTaskStore(tmp_path / "tasks.db", read_only=True)
    reader.close()
    first.close()
    SQLiteTaskStore(tmp_path / "tasks.db").close()


@pytest.mark.parametrize("returning", [True, False])
def test_transitions_with_and_without_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    # SQLite before 3.35 has no RETURNING; the store then reads the row back.
    monkeypatch.setattr(sqlite_store_module, "_HAS_RETURNING", returning)
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    store.create(
        TaskRecord(
            task_id="t", program_key="p", backend="b", created_at=1, updated_at=1
        )
    )
    queued = store.transition("t", S.PENDING, S.QUEUED, attempts=0)
    proving = store.transition("t", S.QUEUED, S.PROVING, attempts=1)
    assert (queued.status, proving.status, proving.attempts) == (
        S.QUEUED,
        S.PROVING,
        1,
    )
    with pytest.raises(paas.IllegalTransition, match="PROVING -> PROVING"):
        store.transition("t", S.QUEUED, S.PROVING)
    assert store.get("t") == proving
    store.close()
