"""Fixtures shared by the tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from helpers import launch

import paas


@pytest.fixture
def service() -> Iterator[paas.ServiceHandle]:
    """A running service with two ScriptedProver workers on backend "native"."""
    with launch(workers=2) as handle:
        yield handle


@pytest.fixture
def new_id(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Unique program ids, so deterministic task ids never collide across tests."""
    counter = itertools.count()
    return lambda: f"{request.node.name}-{next(counter)}"
