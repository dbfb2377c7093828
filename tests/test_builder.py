from __future__ import annotations

from typing import Any

import pytest

import paas
from paas.testing import PROGRAM_KEY, ScriptedProver, script_of

CONFIG = paas.ServiceConfig(pools={"native": 1})


def _builder(config: paas.ServiceConfig = CONFIG) -> paas.ProverServiceBuilder:
    return paas.ProverServiceBuilder(config)


def test_register_returns_the_builder() -> None:
    builder = _builder()
    assert (
        builder.register("p", input_fetcher=script_of, prover=ScriptedProver())
        is builder
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_fetcher": 3}, "input_fetcher must be callable"),
        ({"prover": object()}, "needs a non-empty str 'backend'"),
        ({"prover": []}, "prover list is empty"),
        ({"prover": [ScriptedProver(), ScriptedProver()]}, "two provers for backend"),
        ({"proof_store": object()}, "proof_store must have put"),
    ],
)
def test_register_rejects(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"input_fetcher": script_of, "prover": ScriptedProver()}
    args.update(kwargs)
    with pytest.raises(paas.ConfigError, match=message):
        _builder().register("p", **args)


def test_register_rejects_duplicate_and_empty_keys() -> None:
    builder = _builder().register("p", input_fetcher=script_of, prover=ScriptedProver())
    with pytest.raises(paas.ConfigError, match="registered already"):
        builder.register("p", input_fetcher=script_of, prover=ScriptedProver())
    with pytest.raises(paas.ConfigError, match="program_key must be a non-empty str"):
        builder.register("", input_fetcher=script_of, prover=ScriptedProver())


class _UnshippableProver:
    backend = "native"

    def __init__(self) -> None:
        self.pending = (n for n in range(3))  # generators cannot be pickled

    def prove(self, data: Any) -> bytes:
        return b""


def test_prover_that_cannot_be_shipped_is_rejected_at_register() -> None:
    with pytest.raises(paas.ConfigError, match="cannot be shipped to a worker process"):
        _builder().register(
            PROGRAM_KEY, input_fetcher=script_of, prover=_UnshippableProver()
        )


def test_launch_rejects_a_prover_backend_without_a_pool() -> None:
    builder = _builder().register(
        "p", input_fetcher=script_of, prover=ScriptedProver("gpu")
    )
    with pytest.raises(
        paas.ConfigError, match="backend 'gpu', but config.pools has no"
    ):
        builder.launch()


def test_launch_rejects_a_pool_no_prover_uses() -> None:
    config = paas.ServiceConfig(pools={"native": 1, "sp1": 2})
    builder = _builder(config).register(
        "p", input_fetcher=script_of, prover=ScriptedProver()
    )
    with pytest.raises(paas.ConfigError, match=r"backends no prover uses: \['sp1'\]"):
        builder.launch()


def test_launch_needs_a_program() -> None:
    with pytest.raises(paas.ConfigError, match="register at least one program"):
        _builder().launch()


def test_builder_needs_a_service_config() -> None:
    with pytest.raises(paas.ConfigError, match="config must be a ServiceConfig"):
        paas.ProverServiceBuilder({"pools": {"native": 1}})  # type: ignore[arg-type]
