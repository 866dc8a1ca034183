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
