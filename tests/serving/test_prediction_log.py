"""The prediction log drift reads: rows per (customer, model) with the features used; sampled; capped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rebuy.config import Config, PathsConfig
from serving import prediction_log
from serving.prediction_log import PredictionLog
from tests.support.synthetic import synthetic_scorer

NOW = pd.Timestamp("2025-07-01T00:00:00Z")


@pytest.fixture(scope="module")
def synth() -> Any:
    return synthetic_scorer(n_customers=300, seed=5, rounds=10)


def test_rows_carry_scores_and_features_and_skip_cold_start(synth: Any, tmp_path: Path) -> None:
    scorer, table = synth
    cfg = Config(paths=PathsConfig(data_dir=tmp_path))
    assert prediction_log.read(cfg) is None
    log = PredictionLog(prediction_log.folder(cfg), sample=1.0, max_rows=10_000)
    batch = scorer.score_ids(["c000001", "c000002", "ghost"], NOW)
    log.add(scorer, batch, dict(batch.matrices), NOW)
    assert log.flush() == 2 * 4  # two known customers x four models; the cold-start ghost is not logged
    df = prediction_log.read(cfg)
    assert df is not None and set(df["model"]) == {"churn", "repurchase", "days_to_next", "value"}
    churn = df[df["model"] == "churn"].set_index("customer_id")
    np.testing.assert_allclose(churn.loc[["c000001", "c000002"], "score"], batch.churn[:2])
    feats = list(scorer.models["churn"].feature_names)
    np.testing.assert_array_equal(
        churn.loc[["c000001", "c000002"], feats].to_numpy(),
        table.loc[["c000001", "c000002"], feats].to_numpy(),
    )
    assert (df["scored_at"] == NOW).all() and (df["version"] == "1").all()
    assert not list(prediction_log.folder(cfg).glob(".*.tmp"))


def test_sampling_zero_logs_nothing_and_the_cap_drops_oldest(synth: Any, tmp_path: Path) -> None:
    scorer, _ = synth
    off = PredictionLog(tmp_path / "off", sample=0.0, max_rows=100)
    b = scorer.score_ids(["c000003"], NOW)
    off.add(scorer, b, dict(b.matrices), NOW)
    assert off.flush() == 0 and not (tmp_path / "off").exists()
    capped = PredictionLog(tmp_path / "cap", sample=1.0, max_rows=10)
    for i in range(4):  # 4 segments of 2 customers x 4 models = 8 rows each
        b = scorer.score_ids([f"c{2 * i:06d}", f"c{2 * i + 1:06d}"], NOW + pd.Timedelta(minutes=i))
        capped.add(scorer, b, dict(b.matrices), NOW + pd.Timedelta(minutes=i))
        capped.flush()
    files = sorted((tmp_path / "cap").glob("*.parquet"))
    assert len(files) == 1  # 8 rows <= 10; two segments would be 16
    assert pd.read_parquet(files[0])["scored_at"].iloc[0] == NOW + pd.Timedelta(minutes=3)
    with pytest.raises(ValueError, match="prediction_log_sample"):
        PredictionLog(tmp_path, sample=1.5, max_rows=1)
