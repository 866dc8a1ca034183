"""Shared fixtures. Expensive ones (a simulated shop, trained models) are built once per test run."""

from __future__ import annotations

import os

import pytest

# Nothing phones home from the test suite either.
for _k, _v in {
    "FEAST_USAGE": "False",
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("session")


class SmallShop:
    """A simulated shop shared by every stage's tests: `.sim` (the oracle) and `.tables` (canonical)."""

    def __init__(self, sim, tables) -> None:  # type: ignore[no-untyped-def]
        self.sim = sim
        self.tables = tables


@pytest.fixture(scope="session")
def small_shop() -> SmallShop:
    """3,000 customers x 24 months, seed 11, with events; built once per test run (a few seconds)."""
    from rebuy.simulator import ShopSimulator, SimConfig

    sim = ShopSimulator(SimConfig(customers=3000, months=24, seed=11, events=True, start="2024-01-01"))
    return SmallShop(sim, sim.run_history())
