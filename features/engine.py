"""The compute engines behind the feature SQL: embedded DuckDB (default) or Spark, chosen in `[engine]`.

Every feature family is written once, as DuckDB SQL over named all-numeric frames (features.compute).
DuckDB runs it as written; Spark runs the same text transpiled by SQLGlot (features.spark). Anything
that runs a family's SQL goes through `SqlEngine.query`, so there is no second copy to keep in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pandas as pd

if TYPE_CHECKING:
    from rebuy.config import Config


@runtime_checkable
class SqlEngine(Protocol):
    """Runs one DuckDB-dialect query over named pandas frames and returns the result as a frame."""

    name: str

    def query(self, sql: str, frames: dict[str, pd.DataFrame]) -> pd.DataFrame: ...


def engine_for(cfg: Config, name: str | None = None) -> SqlEngine | None:
    """The configured engine (or `name`): None means DuckDB on a private connection, the default path.

    Spark is imported only here, so the embedded install never needs pyspark.
    """
    choice = name or cfg.engine.compute
    if choice == "duckdb":
        return None
    if choice == "spark":
        from features.spark import SparkEngine

        return SparkEngine.shared(cfg.engine.spark)
    raise ValueError(f"unknown compute engine {choice!r}; use 'duckdb' or 'spark'")
