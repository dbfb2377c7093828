"""Configuration objects, validated when they are built.

Every check names the field and the value it got, so a typo in a deployment's
settings fails at construction rather than deep inside the supervisor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from paas._errors import ConfigError

START_METHODS = ("spawn", "forkserver")
_MAX_MESSAGE_LIMIT = 1 << 40  # far above any sane proof; 4x stays inside ZeroMQ's int64


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")


def check_seconds(
    name: str,
    value: float | None,
    *,
    allow_zero: bool,
    error: type[ValueError] = ConfigError,
) -> None:
    """Check an optional duration argument: None, or a finite number above 0.

    ``allow_zero`` admits 0 too; ``error`` is the exception raised, so call
    arguments (a wait timeout) and settings (a deadline) share the wording.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{name} must be a number or None, got {value!r}")
    too_small = value < 0 if allow_zero else value <= 0
    if not math.isfinite(value) or too_small:
        bound = ">= 0" if allow_zero else "> 0"
        raise error(f"{name} must be finite and {bound}, got {value}")


def _whole(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    The delay before retry number ``n`` (0-based) is
    ``min(max_delay_s, base_delay_s * multiplier ** n)``, then reduced by up to
    ``jitter`` of itself at random, so jitter never pushes it past the cap.
    A task is proven at most ``max_retries + 1`` times.
    """

    max_retries: int = 3
    base_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _whole("max_retries", self.max_retries, 0)
        for name in ("base_delay_s", "multiplier", "max_delay_s", "jitter"):
            _finite(name, getattr(self, name))
        if self.base_delay_s < 0:
            raise ConfigError(f"base_delay_s must be >= 0, got {self.base_delay_s}")
        if self.multiplier < 1:
            raise ConfigError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.max_delay_s < self.base_delay_s:
            raise ConfigError(
                f"max_delay_s must be >= base_delay_s ({self.base_delay_s}), "
                f"got {self.max_delay_s}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be in [0, 1], got {self.jitter}")


@dataclass(frozen=True)
class HeartbeatConfig:
    """Worker liveness.

    Each worker sends a heartbeat every ``interval_s`` from a thread of its own.
    A worker silent for ``timeout_s`` is killed unless its CPU time grew since the
    last check: a prover busy in native code that holds the GIL still burns CPU,
    while a stopped or deadlocked process does not. ``start_timeout_s`` bounds how
    long a new worker may take to report ready (imports, prover setup).
    """

    interval_s: float = 0.5
    timeout_s: float = 10.0
    start_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("interval_s", "timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            _finite(name, value)
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.timeout_s <= self.interval_s:
            raise ConfigError(
                f"timeout_s must be > interval_s ({self.interval_s}), "
                f"got {self.timeout_s}"
            )


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs besides the registered programs.

    ``pools`` maps each backend to its number of worker processes; every backend a
    registered prover names needs a pool, and every pool needs a prover.
    ``max_tasks_per_worker`` recycles a worker (between tasks) after that many
    attempts; ``max_worker_memory_bytes`` kills a worker whose resident memory
    exceeds it; after ``max_start_failures`` start-up deaths in a row, with no
    worker up, the pool's queued tasks fail instead of waiting forever.
    With ``state_dir`` set, tasks live in ``<state_dir>/tasks.db`` (SQLite) and
    proofs under ``<state_dir>/proofs/<program>/``, and survive host restarts;
    without it, both are kept in memory. An input fetcher that raises
    ``InputNotReady`` is asked again every ``blocked_recheck_s``, at most
    ``max_blocked_rechecks`` times.
    """

    pools: Mapping[str, int]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    start_method: str = "spawn"
    max_message_bytes: int = 256 * 1024 * 1024
    shutdown_grace_s: float = 5.0
    fetch_threads: int = 4
    restart_backoff_s: float = 0.2
    restart_backoff_max_s: float = 10.0
    max_start_failures: int = 5
    max_tasks_per_worker: int | None = None
    max_worker_memory_bytes: int | None = None
    state_dir: str | None = None
    recovery_interval_s: float = 30.0
    blocked_recheck_s: float = 5.0
    max_blocked_rechecks: int = 60

    def __post_init__(self) -> None:
        if not isinstance(self.pools, Mapping) or not self.pools:
            raise ConfigError(f"pools must be a non-empty mapping, got {self.pools!r}")
        for backend, size in self.pools.items():
            if not isinstance(backend, str) or not backend:
                raise ConfigError(f"pools keys must be non-empty str, got {backend!r}")
            _whole(f"pools[{backend!r}]", size, 1)
        object.__setattr__(self, "pools", MappingProxyType(dict(self.pools)))
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {self.retry!r}")
        if not isinstance(self.heartbeat, HeartbeatConfig):
            raise ConfigError(
                f"heartbeat must be a HeartbeatConfig, got {self.heartbeat!r}"
            )
        if self.start_method not in START_METHODS:
            raise ConfigError(
                f"start_method must be one of {START_METHODS}, "
                f"got {self.start_method!r}"
            )
        _whole("max_message_bytes", self.max_message_bytes, 1024)
        if self.max_message_bytes > _MAX_MESSAGE_LIMIT:
            raise ConfigError(
                f"max_message_bytes must be <= {_MAX_MESSAGE_LIMIT}, "
                f"got {self.max_message_bytes}"
            )
        _whole("fetch_threads", self.fetch_threads, 1)
        _whole("max_start_failures", self.max_start_failures, 1)
        _whole("max_blocked_rechecks", self.max_blocked_rechecks, 0)
        for name in ("recovery_interval_s", "blocked_recheck_s"):
            value = getattr(self, name)
            _finite(name, value)
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        self._check_state_dir()
        if self.max_tasks_per_worker is not None:
            _whole("max_tasks_per_worker", self.max_tasks_per_worker, 1)
        if self.max_worker_memory_bytes is not None:
            _whole("max_worker_memory_bytes", self.max_worker_memory_bytes, 1 << 20)
        for name in ("shutdown_grace_s", "restart_backoff_s", "restart_backoff_max_s"):
            value = getattr(self, name)
            _finite(name, value)
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ConfigError(
                f"restart_backoff_max_s must be >= restart_backoff_s "
                f"({self.restart_backoff_s}), got {self.restart_backoff_max_s}"
            )

    def _check_state_dir(self) -> None:
        if self.state_dir is None:
            return
        if not isinstance(self.state_dir, str | os.PathLike):
            raise ConfigError(
                f"state_dir must be a path or None, got {self.state_dir!r}"
            )
        if os.path.exists(self.state_dir) and not os.path.isdir(self.state_dir):
            raise ConfigError(
                f"state_dir must be a directory, got file {self.state_dir}"
            )
