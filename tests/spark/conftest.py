"""Spark tests: real local Spark (`local[2]`), run only with REBUY_TEST_INFRA=1 and pyspark installed.

One SparkSession for the whole test session (starting the JVM costs seconds): every test takes
`spark_engine`, which starts it on first use and stops it at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

INFRA = os.environ.get("REBUY_TEST_INFRA") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "infra: needs real infrastructure (REBUY_TEST_INFRA=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from features.spark import spark_available

    reason = None
    if not INFRA:
        reason = "Spark tests run with REBUY_TEST_INFRA=1"
    elif not spark_available():
        # asked for the infrastructure tests but cannot run them: fail, never skip silently
        raise pytest.UsageError(
            "REBUY_TEST_INFRA=1 but pyspark is not installed: run `REBUY_TEST_INFRA=1 make install`"
        )
    for item in items:
        if "tests/spark/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.infra)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[object]:
    from features import spark
    from rebuy.config import SparkConfig

    engine = spark.SparkEngine.shared(SparkConfig(master="local[2]", shuffle_partitions=2))
    yield engine
    spark.stop()
