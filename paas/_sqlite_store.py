"""A durable task store: one SQLite file, one row per task.

    handle threads ---- create / get / query ----+
                                                 +--> lock --> one sqlite3 connection
    supervisor thread - transition, in batch() --+              |
                                                                v
    other processes -- SQLiteTaskStore(read_only=True) --> tasks.db (+ -wal, -shm)

The store keeps no records in Python; every call is a statement on the file. Outside
:meth:`SQLiteTaskStore.batch` each write commits on its own; inside it, the writes
of the block commit together when the outermost block ends, or none of them do.
A transition is a compare-and-set: ``UPDATE ... WHERE task_id = ? AND status = ?``,
so the status and its companion fields change in one statement or not at all.

WAL mode lets read-only stores in other processes read while the host writes; they
see committed writes only. If the host dies, committed writes survive and SQLite
rolls back a batch that was open when the file is next opened. Files are marked
with ``PRAGMA application_id`` and ``user_version``; a file that is not ours is
refused with :class:`StoreError` and never written to.

Cost: a write outside a batch is its own commit (tens of microseconds on disk);
inside a batch it is a few microseconds. Only one writing store may hold a file at
a time: a writer takes an exclusive ``flock`` on ``<file>.lock``, because two
supervisors on one file would both dispatch the same tasks. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
from loguru import logger

from paas._errors import IllegalTransition, StoreError, TaskNotFound
from paas._lifecycle import ALLOWED_TRANSITIONS, TaskStatus, check_transition
from paas._store import _MUTABLE_FIELDS, TaskRecord

_APPLICATION_ID = 0x70616173  # "paas" in ASCII
_SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 5.0

_SQL_TYPES: dict[type[msgspec.inspect.Type], str] = {
    msgspec.inspect.StrType: "TEXT",
    msgspec.inspect.EnumType: "TEXT",  # the status, stored as its value
    msgspec.inspect.FloatType: "REAL",
    msgspec.inspect.IntType: "INTEGER",
    msgspec.inspect.RawType: "BLOB",
}


def _unwrap(kind: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, bool]:
    """The type inside ``X | None``, and whether None is allowed."""
    if not isinstance(kind, msgspec.inspect.UnionType):
        return kind, False
    (inner,) = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
    return inner, True


def _declaration(field: msgspec.inspect.Field) -> str:
    # A KeyError here at import means a TaskRecord field has a type with no column
    # type yet: add it to _SQL_TYPES.
    kind, nullable = _unwrap(field.type)
    constraints = " PRIMARY KEY" if field.name == "task_id" else ""
    if not nullable:
        constraints += " NOT NULL"
    return f"{field.name} {_SQL_TYPES[type(kind)]}{constraints}"


# The table follows TaskRecord field by field, so a new field needs no edit here;
# files written before it was added are refused at open (see _check_columns).
_FIELDS = cast(msgspec.inspect.StructType, msgspec.inspect.type_info(TaskRecord)).fields
_COLUMNS = tuple(field.name for field in _FIELDS)
_RAW_COLUMNS = frozenset(
    field.name
    for field in _FIELDS
    if isinstance(_unwrap(field.type)[0], msgspec.inspect.RawType)
)
_SCHEMA = (
    f"CREATE TABLE tasks ({', '.join(_declaration(field) for field in _FIELDS)})",
    # DESC matches the order query() asks for, so SQLite walks the index without
    # sorting; the implicit rowid tail keeps ties in insertion order.
    "CREATE INDEX tasks_by_status ON tasks (status, updated_at DESC)",
    "CREATE INDEX tasks_by_backend_status ON tasks (backend, status)",
    "CREATE INDEX tasks_by_updated_at ON tasks (updated_at DESC)",
)
_STATUS_INDEX = _COLUMNS.index("status")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tasks"
_RETURNING = f" RETURNING {', '.join(_COLUMNS)}"
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_INSERT = (
    f"INSERT INTO tasks ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (task_id) DO NOTHING"
)
_TERMINAL_VALUES = tuple(s.value for s in TaskStatus if s.is_terminal)
_TERMINAL_IN = f"status IN ({', '.join('?' * len(_TERMINAL_VALUES))})"


class SQLiteTaskStore:
    """A thread-safe task store in one SQLite file that survives the process.

    ``read_only=True`` opens an existing store for reading, also while another
    process writes to it; every write then raises :class:`StoreError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False
    ) -> None:
        self._path = Path(path)
        self._read_only = read_only
        # Re-entrant: batch() holds it for the whole block while the block's own
        # calls take it again.
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._batch_failure: str | None = None
        lock_existed = Path(f"{self._path}.lock").exists()
        self._writer_lock = None if read_only else _claim_writer(self._path)
        try:
            self._conn: sqlite3.Connection | None = _connect(self._path, read_only)
        except BaseException:
            _release_writer(self._writer_lock)
            if self._writer_lock is not None and not lock_existed:
                # Leave a refused file's folder exactly as it was found.
                Path(f"{self._path}.lock").unlink(missing_ok=True)
            raise
        logger.bind(store=str(self._path)).info(
            "Task store opened{}", " read-only" if read_only else ""
        )

    def __repr__(self) -> str:
        return f"SQLiteTaskStore({str(self._path)!r}, read_only={self._read_only})"

    # -- writes --------------------------------------------------------------------

    def create(self, record: TaskRecord) -> tuple[TaskRecord, bool]:
        params = list(msgspec.structs.astuple(record))
        params[_STATUS_INDEX] = record.status.value
        with self._lock:
            inserted = self._write(f"creating task {record.task_id!r}", _INSERT, params)
            if inserted:
                return msgspec.structs.replace(record), True
            return self._fetch(record.task_id), False

    def transition(
        self, task_id: str, expected: TaskStatus, new: TaskStatus, **changes: Any
    ) -> TaskRecord:
        unknown = set(changes) - _MUTABLE_FIELDS
        if unknown:
            raise TypeError(f"transition cannot change fields {sorted(unknown)}")
        action = f"moving task {task_id!r} to {new}"
        with self._lock:
            self._refuse_if_read_only(action)
            if new in ALLOWED_TRANSITIONS[expected]:
                params = [new.value, *changes.values(), task_id, expected.value]
                sql = _update_sql(tuple(changes))
                if _HAS_RETURNING:
                    # One statement instead of UPDATE then SELECT: a transition is
                    # the supervisor's most frequent write.
                    rows = self._execute_write(
                        action, sql + _RETURNING, params
                    ).fetchall()
                    if rows:
                        return self._record_from_row(rows[0])
                elif self._write(action, sql, params):
                    return self._fetch(task_id)

            # The pair is illegal or the task is not in `expected`: like the
            # in-memory store, name the status the task really has.
            current = self._fetch(task_id).status
            if current is not expected:
                raise IllegalTransition(task_id, current, new)
            check_transition(task_id, expected, new)
            raise StoreError(
                f"moving task {task_id!r} {expected} -> {new} in task store "
                f"{self._path} changed no row although the task is in {expected}; "
                "is another process writing to this file?"
            )

    def prune(self, finished_before: float) -> int:
        sql = f"DELETE FROM tasks WHERE {_TERMINAL_IN} AND updated_at < ?"
        with self._lock:
            return self._write(
                "pruning finished tasks", sql, [*_TERMINAL_VALUES, finished_before]
            )

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Commit the writes of the block together at its end, or none of them.

        A nested batch joins the outer one (as a savepoint, so an exception that
        leaves only the inner block undoes only its writes). Other threads wait
        while a batch is open, so keep blocks short. If a write fails, the whole
        batch is rolled back at once, later writes in it raise, and leaving it
        without an exception raises :class:`StoreError`.
        """
        with self._lock:
            level = self._begin_batch_level()
            try:
                yield
            except BaseException:
                self._end_batch_level(level, commit=False)
                raise
            self._end_batch_level(level, commit=True)

    def close(self) -> None:
        """Close the file; later calls raise :class:`StoreError`. Idempotent."""
        with self._lock:
            if self._conn is None:
                return
            if self._batch_depth:
                raise StoreError(f"task store {self._path} cannot close inside batch()")
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"closing task store {self._path} failed: {exc}"
                ) from exc
            finally:
                _release_writer(self._writer_lock)
                self._writer_lock = None
        logger.bind(store=str(self._path)).info("Task store closed")

    # -- reads ---------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord:
        return self._fetch(task_id)

    def counts(self) -> dict[tuple[str, TaskStatus], int]:
        sql = "SELECT backend, status, COUNT(*) FROM tasks GROUP BY backend, status"
        rows = self._read("counting tasks", sql, ())
        return {(backend, self._status(value)): n for backend, value, n in rows}

    def query(
        self,
        *,
        status: TaskStatus | None = None,
        program: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        filters = {
            "status": None if status is None else status.value,
            "program_key": program,
            "backend": backend,
        }
        chosen = {
            column: value for column, value in filters.items() if value is not None
        }
        params: list[Any] = list(chosen.values())
        sql = _SELECT
        if chosen:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column in chosen)
        sql += " ORDER BY updated_at DESC, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._read_records("querying tasks", sql, params)

    def unfinished(self) -> list[TaskRecord]:
        sql = f"{_SELECT} WHERE NOT {_TERMINAL_IN} ORDER BY created_at, rowid"
        return self._read_records("listing unfinished tasks", sql, _TERMINAL_VALUES)

    # -- statements ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"task store {self._path} is closed")
        return self._conn

    def _read(self, action: str, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"{action} in task store {self._path} failed: {exc}"
                ) from exc

    def _write(self, action: str, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement (the caller holds the lock); return rows changed."""
        return self._execute_write(action, sql, params).rowcount

    def _execute_write(
        self, action: str, sql: str, params: Sequence[Any]
    ) -> sqlite3.Cursor:
        conn = self._connection()
        self._refuse_if_read_only(action)
        if self._batch_failure is not None:
            raise StoreError(
                f"{action}: an earlier write in this batch failed "
                f"({self._batch_failure}), so the batch was rolled back"
            )
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            message = f"{action} in task store {self._path} failed: {exc}"
            if self._batch_depth:
                self._abandon_batch(conn, message)
            raise StoreError(message) from exc

    def _refuse_if_read_only(self, action: str) -> None:
        if self._read_only:
            raise StoreError(f"{action}: task store {self._path} is open read-only")

    def _fetch(self, task_id: str) -> TaskRecord:
        found = self._read_records(
            f"reading task {task_id!r}", f"{_SELECT} WHERE task_id = ?", (task_id,)
        )
        if not found:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return found[0]

    def _read_records(
        self, action: str, sql: str, params: Sequence[Any]
    ) -> list[TaskRecord]:
        return [self._record_from_row(row) for row in self._read(action, sql, params)]

    def _record_from_row(self, row: Sequence[Any]) -> TaskRecord:
        fields = dict(zip(_COLUMNS, row, strict=True))
        fields["status"] = self._status(fields["status"])
        for name in _RAW_COLUMNS:
            if fields[name] is not None:
                fields[name] = msgspec.Raw(fields[name])
        return TaskRecord(**fields)

    def _status(self, value: str) -> TaskStatus:
        try:
            return TaskStatus(value)
        except ValueError as exc:
            raise StoreError(
                f"task store {self._path} holds unknown status {value!r}; was it "
                "written by a newer paas?"
            ) from exc

    # -- batches -------------------------------------------------------------------

    def _begin_batch_level(self) -> int:
        conn = self._connection()
        level = self._batch_depth
        if self._batch_failure is None:
            # IMMEDIATE takes the write lock now, so a batch cannot fail halfway
            # because another connection started writing first.
            begin = "BEGIN" if self._read_only else "BEGIN IMMEDIATE"
            self._control(conn, f"SAVEPOINT batch_{level}" if level else begin)
        self._batch_depth = level + 1
        return level

    def _end_batch_level(self, level: int, *, commit: bool) -> None:
        conn = self._connection()
        self._batch_depth = level
        if self._batch_failure is not None:
            self._end_failed_batch_level(level, commit=commit)
        elif level:
            if not commit:
                self._control(conn, f"ROLLBACK TO batch_{level}")
            self._control(conn, f"RELEASE batch_{level}")
        elif not commit:
            self._control(conn, "ROLLBACK")
        else:
            try:
                self._control(conn, "COMMIT")
            except StoreError:
                _roll_back_quietly(conn)
                raise

    def _end_failed_batch_level(self, level: int, *, commit: bool) -> None:
        # The transaction is gone already; the outermost level reports it, unless
        # an exception is leaving the block anyway.
        if level == 0:
            failure, self._batch_failure = self._batch_failure, None
            if commit:
                raise StoreError(f"batch rolled back: {failure}")

    def _control(self, conn: sqlite3.Connection, statement: str) -> None:
        try:
            conn.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{statement} in task store {self._path} failed: {exc}"
            ) from exc

    def _abandon_batch(self, conn: sqlite3.Connection, failure: str) -> None:
        self._batch_failure = failure
        _roll_back_quietly(conn)


def _claim_writer(path: Path) -> int:
    """Hold an exclusive lock beside the file for as long as this store writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StoreError(
            f"task store {path} is in use by another writer (another service on the "
            "same state_dir?); stop it first or use another state_dir"
        ) from exc
    return fd


def _release_writer(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _roll_back_quietly(conn: sqlite3.Connection) -> None:
    # SQLite rolls some failures back on its own. A rollback that fails on top of
    # the failure being reported is left to SQLite, which undoes any open
    # transaction when the connection closes.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


@functools.lru_cache(maxsize=128)
def _update_sql(changed: tuple[str, ...]) -> str:
    # The names were checked against TaskRecord's fields, so they are safe in SQL.
    assignments = "".join(f", {name} = ?" for name in changed)
    return f"UPDATE tasks SET status = ?{assignments} WHERE task_id = ? AND status = ?"


# -- opening -----------------------------------------------------------------------


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    """Open ``path`` as a task store, creating it if missing (unless read-only)."""
    _check_file(path, read_only)
    target = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
    try:
        conn = sqlite3.connect(
            target,
            uri=read_only,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # shared by threads, serialised by our lock
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open task store {path}: {exc}") from exc
    try:
        _prepare(conn, path, read_only)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_file(path: Path, read_only: bool) -> None:
    """Refuse a file that is not SQLite before SQLite touches it."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        if read_only:
            raise StoreError(
                f"task store {path} does not exist (opened read-only, so not created)"
            ) from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of task store {path}"
            ) from exc
        return
    except OSError as exc:
        raise StoreError(f"cannot read task store {path}: {exc}") from exc
    if header and header != _SQLITE_HEADER:
        raise StoreError(
            f"cannot open task store {path}: the file is not an SQLite database (it "
            "lacks the SQLite header). It was left untouched; choose another path."
        )


def _prepare(conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
    """Check the file is ours (or empty, then create the schema) and set it up."""
    fresh = _identify(conn, path)
    if fresh and read_only:
        raise StoreError(
            f"task store {path} is empty (opened read-only, so not created)"
        )
    try:
        if not read_only:
            _set_up_writer(conn, path, fresh)
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(tasks)"))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot set up task store {path}: {exc}") from exc
    _check_columns(columns, path)


def _check_columns(columns: tuple[str, ...], path: Path) -> None:
    # Known limitation: stores are not migrated. A file written before a field was
    # added to TaskRecord (or after one was removed) is refused, not altered.
    missing = [name for name in _COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in _COLUMNS]
    if missing or unknown:
        raise StoreError(
            f"cannot open task store {path}: it was written for another TaskRecord "
            f"(missing columns {missing}, unknown columns {unknown}), and paas does "
            "not migrate task stores yet. It was left untouched."
        )


def _identify(conn: sqlite3.Connection, path: Path) -> bool:
    """True for an empty database, False for ours; refuse anything else unwritten."""
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        user_version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open task store {path}: SQLite cannot read it ({exc}); the file "
            "is corrupt or not a database. It was left untouched."
        ) from exc

    if application_id == 0 and user_version == 0 and not names:
        return True
    if application_id != _APPLICATION_ID:
        raise StoreError(
            f"cannot open task store {path}: it is an SQLite database of another "
            f"application (application_id={application_id}, tables {sorted(names)}), "
            "not a paas task store. It was left untouched; choose another path."
        )
    if user_version != _SCHEMA_VERSION:
        raise StoreError(
            f"cannot open task store {path}: it has schema version {user_version}, "
            f"this paas reads version {_SCHEMA_VERSION}"
        )
    return False


def _set_up_writer(conn: sqlite3.Connection, path: Path, fresh: bool) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(
            f"task store {path} cannot use write-ahead logging (journal mode stays "
            f"{mode!r}); WAL needs a local file system with shared memory"
        )
    # In WAL mode NORMAL fsyncs at checkpoints instead of at every commit, which
    # would mean one fsync per transition outside a batch. A crash of our process
    # still loses nothing and the file never corrupts; only a power loss or OS
    # crash may undo the last few commits.
    conn.execute("PRAGMA synchronous = NORMAL")
    if not fresh:
        return
    conn.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    conn.execute("COMMIT")
    logger.bind(store=str(path)).info("Task store created")
