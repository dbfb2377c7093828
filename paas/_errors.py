"""The one exception tree of paas, split by cause.

    PaasError
    ├── ConfigError (ValueError)         a configuration value is invalid
    ├── UsageError                       the caller misused the API
    │   ├── UnknownProgramError (KeyError)
    │   ├── UnknownBackendError (KeyError)
    │   ├── TaskNotFound (KeyError)
    │   └── ServiceClosedError           the service was used after shutdown
    ├── InputError                       raised *by input fetchers* to signal intent
    │   ├── InputNotReady                not yet: BLOCKED, fetched again later
    │   └── InputRejected                never: PERMANENT_FAILURE at once
    ├── ProverError                      raised *by provers* to signal intent
    │   ├── TransientError               retry with backoff
    │   └── PermanentError               never retry
    ├── TaskFailed                       wait() on a task that ended in PermanentFailure
    ├── WorkerLost                       external failure: a worker died or hung
    │   ├── WorkerCrashed                carries pid, exit code or signal
    │   ├── WorkerHung                   carries pid and silence in seconds
    │   ├── DeadlineExceeded             the attempt ran past its deadline
    │   ├── MemoryLimitExceeded          the worker grew past its memory cap
    │   └── PoolUnavailable              no worker of the backend can start
    ├── EncodingError                    a value cannot travel on the wire
    ├── StoreError                       the task store failed or is not ours
    └── InternalError                    a bug in paas itself
        └── IllegalTransition            the lifecycle table refused a transition

Foreign exceptions (zmq, msgspec, OS) are translated where they cross into paas,
with ``raise ... from`` so the original stays visible.
"""

from __future__ import annotations

import signal


class PaasError(Exception):
    """Root of every exception paas raises on purpose."""


class ConfigError(PaasError, ValueError):
    """A configuration value is invalid; the message names the field."""


class UsageError(PaasError):
    """The caller used the API in a way it does not support."""


class UnknownProgramError(UsageError, KeyError):
    """A program's routing key names no registered program."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownBackendError(UsageError, KeyError):
    """A backend has no prover for the program, or no pool."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TaskNotFound(UsageError, KeyError):
    """No task with this id exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ServiceClosedError(UsageError):
    """The service handle was used after shutdown began."""


class InputError(PaasError):
    """Base for the errors an input fetcher raises to say what became of the input."""


class InputNotReady(InputError):
    """The input does not exist yet; the task waits BLOCKED and is checked again."""


class InputRejected(InputError):
    """The input is invalid for good; the task fails without proving."""


class ProverError(PaasError):
    """Base for the errors a prover raises to say whether a retry can help."""


class TransientError(ProverError):
    """The attempt failed for a reason that may go away: retry with backoff."""


class PermanentError(ProverError):
    """The task can never succeed: fail it without retrying."""


class TaskFailed(PaasError):
    """A task ended in PermanentFailure; carries the last error it saw."""

    def __init__(
        self,
        task_id: str,
        error_type: str,
        message: str,
        attempts: int,
        detail: str = "",
    ) -> None:
        super().__init__(
            f"task {task_id} failed permanently after {attempts} attempt(s): "
            f"{error_type}: {message}"
        )
        self.task_id = task_id
        self.error_type = error_type
        self.error_message = message
        self.attempts = attempts
        self.detail = detail


class WorkerLost(PaasError):
    """A worker stopped serving while it held an attempt."""


class WorkerCrashed(WorkerLost):
    """A worker process exited on its own or was killed by a signal."""

    def __init__(
        self,
        pid: int,
        exitcode: int | None,
        backend: str,
        *,
        starting: bool = False,
        idle: bool = False,
    ) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.backend = backend
        if exitcode is not None and exitcode < 0:
            how = f"was killed by signal {_signal_name(-exitcode)}"
            causes = (
                "a SIGKILL from outside or the OOM killer, or a segfault in native code"
            )
        else:
            how = f"exited with code {exitcode}"
            causes = "os._exit() or a fatal error in the prover's native code"
        if starting:
            super().__init__(
                f"worker pid {pid} of backend {backend!r} {how} during start-up, "
                "before it was ready; likely causes: the prover could not be "
                "unpickled or imported in a fresh process (see the worker's stderr)"
            )
            return
        if idle:
            super().__init__(
                f"worker pid {pid} of backend {backend!r} {how} while it held no "
                f"task; likely causes: {causes}. It is replaced; no task is affected."
            )
            return
        super().__init__(
            f"worker pid {pid} of backend {backend!r} {how} while proving; "
            f"likely causes: {causes}. The attempt counts against the retry budget "
            "(RetryPolicy.max_retries)."
        )


class WorkerHung(WorkerLost):
    """A worker sent no heartbeat and used no CPU for longer than the timeout."""

    def __init__(
        self, pid: int, silent_s: float, backend: str, *, starting: bool = False
    ) -> None:
        self.pid = pid
        self.silent_s = silent_s
        self.backend = backend
        if starting:
            super().__init__(
                f"worker pid {pid} of backend {backend!r} did not report ready within "
                f"{silent_s:.1f} s of starting, so it was killed; likely causes: a "
                "slow or stuck prover setup(), or a stopped process. Raise "
                "HeartbeatConfig.start_timeout_s if setup legitimately takes longer."
            )
            return
        super().__init__(
            f"worker pid {pid} of backend {backend!r} sent no heartbeat and used "
            f"no CPU for {silent_s:.1f} s, so it was killed; likely causes: the "
            "process was stopped (SIGSTOP) or is blocked in native code. Raise "
            "HeartbeatConfig.timeout_s if provers legitimately block this long."
        )


class DeadlineExceeded(WorkerLost):
    """An attempt ran past its deadline; its worker's process group was killed."""

    def __init__(self, pid: int, deadline_s: float, backend: str) -> None:
        self.pid = pid
        self.deadline_s = deadline_s
        super().__init__(
            f"attempt on worker pid {pid} of backend {backend!r} exceeded its deadline "
            f"of {deadline_s:g} s, so the worker and its child processes were killed. "
            "Raise the program's or the task's deadline_s if proofs can take longer."
        )


class MemoryLimitExceeded(WorkerLost):
    """A worker's resident memory went over the configured cap."""

    def __init__(
        self, pid: int, rss_bytes: int, limit_bytes: int, backend: str
    ) -> None:
        self.pid = pid
        self.rss_bytes = rss_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"worker pid {pid} of backend {backend!r} exceeded its memory limit: "
            f"{rss_bytes} bytes resident, limit {limit_bytes} "
            "(ServiceConfig.max_worker_memory_bytes), so it was killed"
        )


class PoolUnavailable(WorkerLost):
    """Workers of a backend keep dying during start-up; its tasks cannot run."""

    def __init__(self, backend: str, failures: int, last_error: str) -> None:
        self.backend = backend
        super().__init__(
            f"pool {backend!r} could not start a worker in {failures} consecutive "
            f"tries; last error: {last_error}. Check that the prover imports and its "
            "setup() succeeds in a fresh process."
        )


class EncodingError(PaasError):
    """A value could not be encoded for (or decoded from) the wire."""


class StoreError(PaasError):
    """The task store could not be opened, read or written."""


class InternalError(PaasError):
    """paas reached a state its own logic says is impossible."""


class IllegalTransition(InternalError):
    """A lifecycle transition not in the allowed table was attempted."""

    def __init__(self, task_id: str, current: object, requested: object) -> None:
        self.task_id = task_id
        self.current = current
        self.requested = requested
        super().__init__(f"task {task_id}: illegal transition {current} -> {requested}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
