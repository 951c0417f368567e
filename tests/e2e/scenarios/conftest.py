"""Shared fixtures of the alert scenario suite: one `Scenario` (server + signed receivers) per module.

A module declares `SCENARIO_CONFIG` (overrides of `tests.support.scenario.base_config`) and, if it needs
more receivers, `EXTRA_RECEIVERS` (name → the HTTP statuses that receiver answers first).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.scenario import Scenario


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    module = request.module
    name = module.__name__.rsplit(".", 1)[-1]
    running = Scenario(
        tmp_path_factory.mktemp(name),
        overrides=getattr(module, "SCENARIO_CONFIG", {}),
        extra_receivers=getattr(module, "EXTRA_RECEIVERS", {}),
    ).start()
    try:
        yield running
    finally:
        running.stop()
