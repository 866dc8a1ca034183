"""`rebuy features apply|build|materialize|push` on a canonical data directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from features.online import OnlineFeatureReader
from rebuy.config import Config, FeaturesConfig, PathsConfig
from rebuy.ingest import write_canonical

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")


def test_features_commands(tmp_path, make_shop):
    tables = make_shop(4, n_customers=25)
    data = tmp_path / "data"
    write_canonical(tables, data)
    as_of = "2025-08-01T00:00:00Z"
    cfg_file = tmp_path / "rebuy.toml"
    cfg_file.write_text("[features]\nhistory_days = 28\n[horizons]\nvalue_days = 60\n", encoding="utf-8")
    run = CliRunner().invoke
    base = ["--config", str(cfg_file), "--data-dir", str(data)]
    for args in (["apply"], ["build", "--as-of", as_of], ["materialize", "--as-of", as_of]):
        res = run(app, ["features", *args, *base])
        assert res.exit_code == 0, res.output
    assert "churn_v1" in run(app, ["features", "apply", *base]).output
    snaps = pd.read_parquet(data / "feast" / "offline" / "order_history.parquet")["event_timestamp"].unique()
    assert len(snaps) >= 4 and pd.Timestamp(as_of) in set(snaps)

    cfg = Config(paths=PathsConfig(data_dir=data), features=FeaturesConfig(history_days=28))
    reader = OnlineFeatureReader(cfg, "repurchase_v1")
    cid = tables["customers"]["customer_id"].iloc[0]
    before, found, _ = reader.read([cid], pd.Timestamp(as_of))
    assert found.all()
    new = tmp_path / "views.parquet"
    now = pd.Timestamp(as_of) + pd.Timedelta(minutes=30)
    pd.DataFrame(
        {
            "customer_id": [cid] * 4,
            "occurred_at": [now - pd.Timedelta(minutes=1)] * 4,
            "event_type": "view",
            "category": "tea",
        }
    ).to_parquet(new)
    res = run(app, ["features", "push", *base, "--as-of", now.isoformat(), "--events", str(new)])
    assert res.exit_code == 0, res.output
    after, _, age = reader.read([cid], now)
    v1h = reader.feature_names.index("views_1h")
    assert after[0, v1h] == before[0, v1h] + 4 and age[0] == 0.0
    assert np.isfinite(after[0, reader.feature_names.index("orders_total")])

    res = run(app, ["features", "push", *base, "--as-of", as_of])
    assert res.exit_code != 0 and "nothing to push" in str(res.exception or res.output)
