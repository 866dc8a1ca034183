"""Point-in-time training sets on Spark: the as-of join over snapshots partitioned by cutoff gives the
same rows, features and labels as the Feast/DuckDB path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_features, customer_pairs
from features.labels import LABELS
from features.spark import PARTITION, write_snapshots
from features.store import build, snapshot_dir
from features.training_set import build_training_set, feature_names
from rebuy.config import Config, EngineConfig, PathsConfig

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::RuntimeWarning", "ignore::UserWarning"
)

CUTOFFS = [pd.Timestamp(d, tz="UTC") for d in ("2024-09-01", "2025-02-15", "2025-06-01")]
AS_OF = pd.Timestamp("2025-12-31", tz="UTC")


def _cfg(tmp_path, engine: str) -> Config:
    return Config(paths=PathsConfig(data_dir=tmp_path / engine), engine=EngineConfig(compute=engine))


def test_training_set_on_spark_equals_feast_on_duckdb(tmp_path, small_shop, spark_engine):
    tables = small_shop.tables
    duck_cfg, spark_cfg = _cfg(tmp_path, "duckdb"), _cfg(tmp_path, "spark")
    # decoy snapshots 30 h before and 5 h after each cutoff: the join must pick the one AT the cutoff
    decoys = [c + pd.Timedelta(hours=h) for c in CUTOFFS for h in (-30, 5)]
    build(duck_cfg, tables, decoys)
    write_snapshots(
        snapshot_dir(spark_cfg), compute_features(tables, customer_pairs(tables["customers"], decoys))
    )

    duck = build_training_set(duck_cfg, "repurchase_v1", CUTOFFS, tables, as_of=AS_OF)
    spark = build_training_set(spark_cfg, "repurchase_v1", CUTOFFS, tables, as_of=AS_OF)

    names = feature_names(duck_cfg, "repurchase_v1")
    assert list(spark.columns) == list(duck.columns) == ["customer_id", "cutoff", *names, *LABELS]
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    pd.testing.assert_series_equal(spark["cutoff"], duck["cutoff"])
    for col in [*names, *LABELS]:
        a, b = duck[col].to_numpy(np.float64), spark[col].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=col)
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col)
    # the snapshots are partitioned by cutoff: the three cutoffs and the six decoys
    parts = sorted(p.name for p in snapshot_dir(spark_cfg).iterdir())
    assert len(parts) == 9 and all(p.startswith(f"{PARTITION}=") for p in parts)
    assert duck["repurchase"].nunique() == 2 and duck["views_7d"].gt(0).any()  # not vacuous


def test_rebuilding_a_cutoff_replaces_its_partition_only(tmp_path, small_shop):
    tables = small_shop.tables
    root = tmp_path / "snapshots"
    first = compute_features(tables, customer_pairs(tables["customers"], CUTOFFS[:2]))
    write_snapshots(root, first)
    again = first.loc[first["cutoff"] == CUTOFFS[1]].assign(spend_total=-1.0)
    write_snapshots(root, again)
    stored = pd.read_parquet(root)
    stored[PARTITION] = stored[PARTITION].astype(np.int64)
    by_cut = stored.groupby(PARTITION)["spend_total"]
    assert by_cut.size().tolist() == first.groupby("cutoff").size().tolist()
    assert (by_cut.max().to_numpy()[1], by_cut.min().to_numpy()[0]) == (-1.0, 0.0)
    assert not any(p.name.startswith(".") for p in root.iterdir())  # no staging left behind
