"""paas: proof generation as a service, embedded in a Python host process.

Register programs (input fetcher, prover, proof store), launch the service, submit
tasks to a backend and wait for proofs. Proving runs in per-backend pools of OS
processes, supervised over ZeroMQ. Logging uses loguru and is disabled until the
host calls ``loguru.logger.enable("paas")``.
"""

from loguru import logger as _logger

from paas._clock import Clock, FakeClock, SystemClock
from paas._config import HeartbeatConfig, RetryPolicy, ServiceConfig
from paas._errors import (
    ConfigError,
    DeadlineExceeded,
    EncodingError,
    IllegalTransition,
    InputError,
    InputNotReady,
    InputRejected,
    InternalError,
    MemoryLimitExceeded,
    PaasError,
    PermanentError,
    PoolUnavailable,
    ProverError,
    ServiceClosedError,
    StoreError,
    TaskFailed,
    TaskNotFound,
    TransientError,
    UnknownBackendError,
    UnknownProgramError,
    UsageError,
    WorkerCrashed,
    WorkerHung,
    WorkerLost,
)
from paas._lifecycle import ALLOWED_TRANSITIONS, TaskStatus
from paas._proofs import FileProofStore, InMemoryProofStore, ProofStore
from paas._registry import Program, Prover
from paas._retry import backoff_delay_s
from paas._service import ProverServiceBuilder, ServiceHandle, TaskId
from paas._sqlite_store import SQLiteTaskStore
from paas._store import InMemoryTaskStore, TaskRecord, TaskStore

_logger.disable("paas")

__version__ = "0.1.0"

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Clock",
    "ConfigError",
    "DeadlineExceeded",
    "EncodingError",
    "FakeClock",
    "FileProofStore",
    "HeartbeatConfig",
    "IllegalTransition",
    "InMemoryProofStore",
    "InMemoryTaskStore",
    "InputError",
    "InputNotReady",
    "InputRejected",
    "InternalError",
    "MemoryLimitExceeded",
    "PaasError",
    "PermanentError",
    "PoolUnavailable",
    "Program",
    "ProofStore",
    "Prover",
    "ProverError",
    "ProverServiceBuilder",
    "RetryPolicy",
    "SQLiteTaskStore",
    "ServiceClosedError",
    "ServiceConfig",
    "ServiceHandle",
    "StoreError",
    "SystemClock",
    "TaskFailed",
    "TaskId",
    "TaskNotFound",
    "TaskRecord",
    "TaskStatus",
    "TaskStore",
    "TransientError",
    "UnknownBackendError",
    "UnknownProgramError",
    "UsageError",
    "WorkerCrashed",
    "WorkerHung",
    "WorkerLost",
    "__version__",
    "backoff_delay_s",
]
