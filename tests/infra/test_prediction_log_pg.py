"""The prediction log as a Postgres table: the frame drift reads equals the Parquet log's, capped alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving import prediction_log
from tests.support.synthetic import synthetic_scorer

NOW = pd.Timestamp("2025-07-01T00:00:00Z")


@pytest.fixture(scope="module")
def synth() -> Any:
    return synthetic_scorer(n_customers=300, seed=5, rounds=10)


def test_table_log_reads_back_like_parquet(synth: Any, tmp_path: Path, stores_config, pg_schema) -> None:
    scorer, _ = synth
    shared = stores_config(tmp_path / "pg", prediction_log=pg_schema())
    local = stores_config(tmp_path / "local")
    assert prediction_log.read(shared) is None
    logs = [prediction_log.open_log(c) for c in (shared, local)]
    assert logs[0].url is not None and logs[1].url is None
    for i in range(3):
        b = scorer.score_ids([f"c{i:06d}", f"c{i + 10:06d}", "ghost"], NOW + pd.Timedelta(minutes=i))
        for log in logs:
            log.add(scorer, b, dict(b.matrices), NOW + pd.Timedelta(minutes=i))
            assert log.flush() == 2 * len(scorer.models)  # the cold-start ghost is not logged
    got, want = prediction_log.read(shared), prediction_log.read(local)
    assert got is not None and want is not None
    key = ["scored_at", "model", "customer_id"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)[list(got.columns)]
    assert set(got.columns) == set(prediction_log.read(local).columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert np.isfinite(got["score"]).all()


def test_table_log_keeps_the_newest_rows(synth: Any, tmp_path: Path, stores_config, pg_schema) -> None:
    scorer, _ = synth
    cfg = stores_config(tmp_path, prediction_log=pg_schema())
    log = prediction_log.PredictionLog(Path("unused"), 1.0, 10, url=cfg.stores.prediction_log)
    for i in range(4):
        b = scorer.score_ids([f"c{2 * i:06d}", f"c{2 * i + 1:06d}"], NOW + pd.Timedelta(minutes=i))
        log.add(scorer, b, dict(b.matrices), NOW + pd.Timedelta(minutes=i))
        log.flush()
    df = prediction_log.read(cfg)
    assert df is not None and len(df) == 10
    assert df["scored_at"].iloc[-1] == NOW + pd.Timedelta(minutes=3)
