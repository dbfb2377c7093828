"""One adapter per pool library, so every scenario drives them the same way.

    runner = make(name)              imports the library (outside any timing)
    runner.start(workers, fns)       builds the pool; paas registers each fn
    runner.run(fn, args, timeout_s)  one outcome per arg, in the order of args
    runner.stop(hard)                releases the pool; hard: do not wait on it

An outcome is the task's bytes, the exception that stood for it, or TIMED_OUT
when the pool had not answered by the deadline. ``run`` never raises for a task,
so the crash scenario can tell a lost task from a hang. Each adapter uses the
library's ordinary per-task API with default settings, apart from the chunk size
where a name says so. The default start method is the platform's (fork on Linux
under Python 3.11) unless the name says "(spawn)"; loky and paas always spawn.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import inspect
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmarks import _tasks

Task = Callable[[Any], bytes]


class _TimedOut:
    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()
Outcome = bytes | BaseException | _TimedOut

POOL_CS1 = "Pool imap cs=1"
POOL_CS100 = "Pool imap cs=100"
POOL_SPAWN = "Pool imap cs=1 (spawn)"
PPE_SUBMIT = "PPE submit"
PPE_SPAWN = "PPE submit (spawn)"
PPE_MAP = "PPE map cs=100"
LOKY = "loky submit"
PEBBLE = "pebble schedule"
PAAS = "paas"
PAAS_MANY = "paas submit_many"
PAAS_SQLITE = "paas SQLiteTaskStore"
PAAS_SQLITE_MANY = "paas SQLiteTaskStore submit_many"

PAAS_BACKEND = "bench"


class Runner(Protocol):
    def start(self, workers: int, fns: Sequence[Task]) -> None: ...

    def run(self, fn: Task, args: Sequence[Any], timeout_s: float) -> list[Outcome]: ...

    def stop(self, hard: bool) -> None: ...


def paas_variants() -> list[str]:
    """paas as the brief asks for it, plus what this paas build also offers.

    ``paas.SQLiteTaskStore`` and ``ServiceHandle.submit_many`` are looked up at
    run time: they arrive in other branches, and the suite must run without them.
    """
    import paas

    many = hasattr(paas.ServiceHandle, "submit_many")
    names = [PAAS, *([PAAS_MANY] if many else [])]
    if hasattr(paas, "SQLiteTaskStore"):
        names += [PAAS_SQLITE, *([PAAS_SQLITE_MANY] if many else [])]
    return names


def make(name: str) -> Runner:
    factories: dict[str, Callable[[], Runner]] = {
        POOL_CS1: lambda: _MpPool(chunksize=1, method=None),
        POOL_CS100: lambda: _MpPool(chunksize=100, method=None),
        POOL_SPAWN: lambda: _MpPool(chunksize=1, method="spawn"),
        PPE_SUBMIT: lambda: _Executor("ppe", method=None),
        PPE_SPAWN: lambda: _Executor("ppe", method="spawn"),
        PPE_MAP: lambda: _ExecutorMap(chunksize=100),
        LOKY: lambda: _Executor("loky", method=None),
        PEBBLE: lambda: _Executor("pebble", method=None),
        PAAS: lambda: PaasRunner(sqlite=False),
        PAAS_MANY: lambda: PaasRunner(sqlite=False, many=True),
        PAAS_SQLITE: lambda: PaasRunner(sqlite=True),
        PAAS_SQLITE_MANY: lambda: PaasRunner(sqlite=True, many=True),
    }
    return factories[name]()


@contextlib.contextmanager
def running(
    name: str,
    workers: int,
    fns: Sequence[Task],
    warm_timeout_s: float,
    hard_stop: bool = False,
) -> Iterator[Runner]:
    """A started, warmed-up runner: every worker has run a task before the yield.

    Stopping is "hard" (no waiting on workers) when asked or when the body raised,
    so a pool that lost a task cannot hold the trial open waiting for it.
    """
    runner = make(name)
    runner.start(workers, list(dict.fromkeys([*fns, _tasks.nap])))
    hard = True
    try:
        warm_up(runner, workers, warm_timeout_s)
        yield runner
        hard = hard_stop
    finally:
        runner.stop(hard)


def warm_up(runner: Runner, workers: int, timeout_s: float) -> None:
    """Run short naps until ``workers`` distinct pids answered.

    One answer is not enough: a pool may serve a whole batch from its first
    worker while the second is still importing, and the timed run would then pay
    for that import.
    """
    deadline_s = time.monotonic() + timeout_s
    pids: set[bytes] = set()
    while len(pids) < workers:
        remaining_s = deadline_s - time.monotonic()
        if remaining_s <= 0:
            diagnosis = getattr(runner, "diagnosis", lambda: "")()
            raise TimeoutError(
                f"warm-up saw {len(pids)} of {workers} workers in {timeout_s} s"
                f"{diagnosis}"
            )
        outcomes = runner.run(_tasks.nap, [0.05] * (2 * workers), remaining_s)
        pids.update(o for o in outcomes if isinstance(o, bytes))


def _deadline_left_s(deadline_s: float) -> float:
    return max(0.0, deadline_s - time.monotonic())


def _chunksize_for(chunksize: int, tasks: int, workers: int) -> int:
    """``chunksize``, capped so that every worker gets a few chunks.

    Without the cap a batch smaller than one chunk (the warm-up's few naps) would
    all go to one worker, and the other would never be seen warm. For the timed
    batches the cap is far above the nominal chunk size, so it changes nothing.
    """
    return max(1, min(chunksize, tasks // (4 * workers)))


class _MpPool:
    """multiprocessing.Pool.imap_unordered; results come back in finish order."""

    def __init__(self, chunksize: int, method: str | None) -> None:
        self._chunksize = chunksize
        self._context = multiprocessing.get_context(method)

    def start(self, workers: int, fns: Sequence[Task]) -> None:
        self._workers = workers
        self._pool = self._context.Pool(workers)

    def run(self, fn: Task, args: Sequence[Any], timeout_s: float) -> list[Outcome]:
        chunksize = _chunksize_for(self._chunksize, len(args), self._workers)
        results = self._pool.imap_unordered(fn, args, chunksize=chunksize)
        if chunksize > 1:
            return _drain_chunked(results, len(args))
        deadline_s = time.monotonic() + timeout_s
        outcomes: list[Outcome] = []
        while len(outcomes) < len(args):
            try:
                outcomes.append(results.next(timeout=_deadline_left_s(deadline_s)))
            except multiprocessing.TimeoutError:
                break
            except Exception as exc:  # noqa: BLE001 - the task's error is its outcome
                outcomes.append(exc)
        return outcomes + [TIMED_OUT] * (len(args) - len(outcomes))

    def stop(self, hard: bool) -> None:
        if hard:
            self._pool.terminate()
        else:
            self._pool.close()
            self._pool.join()


def _drain_chunked(results: Iterator[bytes], count: int) -> list[Outcome]:
    """Collect from the generator imap_unordered returns for chunks above 1.

    That generator takes no timeout (only the chunk-size-1 iterator does), so the
    trial's hard timeout is what bounds a hang here; the first failure ends the
    batch, as it does for a caller iterating the generator.
    """
    outcomes: list[Outcome] = []
    try:
        outcomes.extend(results)
    except Exception as exc:  # noqa: BLE001 - the task's error is its outcome
        outcomes.append(exc)
    return outcomes + [TIMED_OUT] * (count - len(outcomes))


class _Executor:
    """One future per task: ProcessPoolExecutor.submit, loky, pebble.schedule."""

    def __init__(self, library: str, method: str | None) -> None:
        self._library = library
        self._context = multiprocessing.get_context(method)
        if library == "loky":
            import loky

            self._loky = loky
        elif library == "pebble":
            import pebble

            self._pebble = pebble

    def start(self, workers: int, fns: Sequence[Task]) -> None:
        if self._library == "ppe":
            self._executor: Any = cf.ProcessPoolExecutor(
                workers, mp_context=self._context
            )
        elif self._library == "loky":
            self._executor = self._loky.ProcessPoolExecutor(workers)
        else:
            self._executor = self._pebble.ProcessPool(workers)

    def _submit(self, fn: Task, arg: Any) -> cf.Future[bytes]:
        if self._library == "pebble":
            future: cf.Future[bytes] = self._executor.schedule(fn, args=(arg,))
            return future
        return self._executor.submit(fn, arg)  # type: ignore[no-any-return]

    def run(self, fn: Task, args: Sequence[Any], timeout_s: float) -> list[Outcome]:
        futures = [self._submit(fn, arg) for arg in args]
        cf.wait(futures, timeout=timeout_s)
        return [_outcome_of(future) for future in futures]

    def stop(self, hard: bool) -> None:
        if self._library == "pebble":
            if hard:
                self._executor.stop()
            else:
                self._executor.close()
            self._executor.join(timeout=None if not hard else 5.0)
        elif self._library == "loky":
            self._executor.shutdown(wait=not hard, kill_workers=hard)
        else:
            self._executor.shutdown(wait=not hard, cancel_futures=hard)


def _outcome_of(future: cf.Future[bytes]) -> Outcome:
    if not future.done():
        return TIMED_OUT
    error = future.exception()
    return error if error is not None else future.result()


class _ExecutorMap:
    """ProcessPoolExecutor.map with a chunk size: results in submission order."""

    def __init__(self, chunksize: int) -> None:
        self._chunksize = chunksize

    def start(self, workers: int, fns: Sequence[Task]) -> None:
        self._workers = workers
        self._executor = cf.ProcessPoolExecutor(workers)

    def run(self, fn: Task, args: Sequence[Any], timeout_s: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        chunksize = _chunksize_for(self._chunksize, len(args), self._workers)
        try:
            results = self._executor.map(
                fn, args, timeout=timeout_s, chunksize=chunksize
            )
            outcomes.extend(results)
        except TimeoutError:
            return outcomes + [TIMED_OUT] * (len(args) - len(outcomes))
        except Exception as exc:  # noqa: BLE001 - map stops at the first failure
            return outcomes + [exc] * (len(args) - len(outcomes))
        return outcomes

    def stop(self, hard: bool) -> None:
        self._executor.shutdown(wait=not hard, cancel_futures=hard)


@dataclass(frozen=True)
class Call:
    """A paas program: which registered function to run, and on what."""

    routing_key: str
    arg: Any


def _arg_of(call: Call) -> Any:
    return call.arg


def paas_key(fn: Task) -> str:
    return fn.__name__


class PaasRunner:
    """paas: each function registered as a program on one backend of ``workers``.

    Tasks go in with ``submit_task`` one by one (or all in one ``submit_many``
    call when ``many``), then every task is waited on, which is how a host uses
    the service. ``handle`` is public for scenarios that need more than ``run``
    (status polling, counts).
    """

    def __init__(self, sqlite: bool, many: bool = False, **config_overrides: Any):
        import paas

        self._paas = paas
        self._sqlite = sqlite
        self._many = many
        self._config_overrides = config_overrides
        self._scratch: Path | None = None

    def start(self, workers: int, fns: Sequence[Task]) -> None:
        paas = self._paas
        config = paas.ServiceConfig(
            pools={PAAS_BACKEND: workers}, **self._config_overrides
        )
        builder = paas.ProverServiceBuilder(config, store=self._make_store())
        for fn in fns:
            builder.register(
                paas_key(fn),
                input_fetcher=_arg_of,
                prover=paas.Prover(backend=PAAS_BACKEND, prove=fn),
            )
        self.handle: Any = builder.launch()

    def _make_store(self) -> Any:
        if not self._sqlite:
            return None
        self._scratch = Path(tempfile.mkdtemp(prefix="paas-bench-"))
        return make_sqlite_store(self._paas, self._scratch / "tasks.sqlite3")

    def submit(self, fn: Task, arg: Any) -> str:
        return str(self.handle.submit_task(Call(paas_key(fn), arg), PAAS_BACKEND))

    def submit_calls(self, calls: Sequence[Call]) -> list[str]:
        if self._many:
            return [str(t) for t in self.handle.submit_many(calls, PAAS_BACKEND)]
        return [str(self.handle.submit_task(call, PAAS_BACKEND)) for call in calls]

    def run(self, fn: Task, args: Sequence[Any], timeout_s: float) -> list[Outcome]:
        deadline_s = time.monotonic() + timeout_s
        task_ids = self.submit_calls([Call(paas_key(fn), arg) for arg in args])
        return [self._outcome(task_id, deadline_s) for task_id in task_ids]

    def _outcome(self, task_id: str, deadline_s: float) -> Outcome:
        try:
            proof: bytes = self.handle.wait(
                task_id, timeout_s=_deadline_left_s(deadline_s)
            )
        except TimeoutError:
            return TIMED_OUT
        except self._paas.PaasError as exc:
            return exc
        return proof

    def diagnosis(self) -> str:
        """The service's counters, for a warm-up that timed out."""
        return f"; paas metrics: {self.handle.metrics()}"

    def stop(self, hard: bool) -> None:
        try:
            self.handle.shutdown()
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)


def make_sqlite_store(paas: Any, path: Path) -> Any:
    """Build ``paas.SQLiteTaskStore``, passing a file path if it needs one.

    The store's signature is not pinned down yet (another branch adds it), so a
    required first argument is taken to be the database path.
    """
    store_class = paas.SQLiteTaskStore
    required = [
        p
        for p in inspect.signature(store_class).parameters.values()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return store_class(str(path)) if required else store_class()
