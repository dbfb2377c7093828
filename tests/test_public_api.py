from __future__ import annotations

import subprocess
import sys

import paas

EXPECTED = [
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


def test_public_surface_is_pinned() -> None:
    assert paas.__all__ == EXPECTED
    assert paas.__all__ == sorted(paas.__all__)
    for name in paas.__all__:
        assert hasattr(paas, name), name


def test_task_status_names() -> None:
    assert [s.name for s in paas.TaskStatus] == [
        "PENDING",
        "QUEUED",
        "PROVING",
        "COMPLETED",
        "TRANSIENT_FAILURE",
        "PERMANENT_FAILURE",
        "BLOCKED",
    ]


def test_importing_paas_adds_no_log_sink_and_no_gpl_code() -> None:
    probe = (
        "import sys, loguru, paas, paas.cli\n"
        "assert 'groth16py' not in sys.modules, 'paas imported groth16py'\n"
        "from loguru import logger\n"
        "assert len(logger._core.handlers) == 1, 'paas added a loguru sink'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_error_tree_is_split_by_cause() -> None:
    assert issubclass(paas.ConfigError, ValueError)
    assert issubclass(paas.TaskNotFound, KeyError)
    for cls in (paas.UnknownProgramError, paas.UnknownBackendError, paas.TaskNotFound):
        assert issubclass(cls, paas.UsageError)
    for cls in (paas.TransientError, paas.PermanentError):
        assert issubclass(cls, paas.ProverError)
    for cls in (paas.WorkerCrashed, paas.WorkerHung):
        assert issubclass(cls, paas.WorkerLost)
    assert issubclass(paas.IllegalTransition, paas.InternalError)
    for cls in (paas.UsageError, paas.ProverError, paas.WorkerLost, paas.InternalError):
        assert issubclass(cls, paas.PaasError)
