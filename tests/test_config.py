from __future__ import annotations

import math
from typing import Any

import pytest

import paas


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
        ({"max_retries": 1.5}, "max_retries must be an int"),
        ({"max_retries": True}, "max_retries must be an int"),
        ({"base_delay_s": -0.1}, "base_delay_s must be >= 0"),
        ({"base_delay_s": math.nan}, "base_delay_s must be finite"),
        ({"multiplier": 0.5}, "multiplier must be >= 1, got 0.5"),
        ({"multiplier": math.nan}, "multiplier must be finite"),
        ({"max_delay_s": math.inf}, "max_delay_s must be finite"),
        (
            {"base_delay_s": 2.0, "max_delay_s": 1.0},
            "max_delay_s must be >= base_delay_s",
        ),
        ({"jitter": 1.5}, r"jitter must be in \[0, 1\]"),
        ({"jitter": "0.1"}, "jitter must be a number"),
    ],
)
def test_retry_policy_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paas.ConfigError, match=message):
        paas.RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 0}, "interval_s must be > 0"),
        ({"timeout_s": -1}, "timeout_s must be > 0"),
        ({"interval_s": math.nan}, "interval_s must be finite"),
        (
            {"interval_s": 2.0, "timeout_s": 1.0},
            r"timeout_s must be > interval_s \(2.0\)",
        ),
        ({"start_timeout_s": 0}, "start_timeout_s must be > 0"),
    ],
)
def test_heartbeat_config_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paas.ConfigError, match=message):
        paas.HeartbeatConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pools": {}}, "pools must be a non-empty mapping"),
        ({"pools": {"native": 0}}, r"pools\['native'\] must be >= 1, got 0"),
        ({"pools": {"native": -2}}, r"pools\['native'\] must be >= 1, got -2"),
        ({"pools": {"": 1}}, "pools keys must be non-empty str"),
        (
            {"pools": {"native": 1}, "start_method": "fork"},
            "start_method must be one of",
        ),
        (
            {"pools": {"native": 1}, "retry": {"max_retries": 1}},
            "retry must be a RetryPolicy",
        ),
        (
            {"pools": {"native": 1}, "max_message_bytes": 10},
            "max_message_bytes must be >=",
        ),
        (
            {"pools": {"native": 1}, "shutdown_grace_s": math.nan},
            "shutdown_grace_s must be",
        ),
    ],
)
def test_service_config_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paas.ConfigError, match=message):
        paas.ServiceConfig(**kwargs)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        paas.RetryPolicy(max_retries=-1)


def test_pools_are_frozen_after_validation() -> None:
    pools = {"native": 1}
    config = paas.ServiceConfig(pools=pools)
    pools["native"] = 0
    assert config.pools["native"] == 1
    with pytest.raises(TypeError):
        config.pools["native"] = 5  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_message_bytes": 2**63}, "max_message_bytes must be <="),
        (
            {"restart_backoff_s": 5.0, "restart_backoff_max_s": 1.0},
            "restart_backoff_max_s must be >= restart_backoff_s",
        ),
    ],
)
def test_service_config_rejects_inconsistent_values(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(paas.ConfigError, match=message):
        paas.ServiceConfig(pools={"native": 1}, **kwargs)


def test_state_dir_that_is_a_file_is_rejected(tmp_path: Any) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(paas.ConfigError, match="state_dir must be a directory"):
        paas.ServiceConfig(pools={"native": 1}, state_dir=str(afile))
