"""The features on the shared simulated shop: they run end to end and carry the simulator's signals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.training_set import build_training_set, cutoff_grid, feature_names
from rebuy.config import Config, FeaturesConfig, PathsConfig

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")]


def test_training_set_on_simulated_shop(tmp_path, small_shop):
    tables = small_shop.tables
    as_of = tables["orders"]["ordered_at"].max()
    cfg = Config(paths=PathsConfig(data_dir=tmp_path / "d"), features=FeaturesConfig(history_days=56))
    cutoffs = cutoff_grid(cfg, as_of, horizon_days=cfg.horizons.repurchase_days)
    assert len(cutoffs) == 5 and cutoffs[-1] + pd.Timedelta(days=30) <= as_of
    ts = build_training_set(cfg, "repurchase_v1", cutoffs, tables, as_of=as_of)
    names = feature_names(cfg, "repurchase_v1")
    assert len(ts) > 1000 and not ts.duplicated(["customer_id", "cutoff"]).any()
    assert ts["orders_total"].notna().all() and ts["views_7d"].notna().all()
    assert ts["repurchase"].notna().all()
    mature = ts["cutoff"] + pd.Timedelta(days=cfg.horizons.churn_days) <= as_of
    assert mature.any() and (~mature).any()
    # churn is defined exactly for customers with an order, once its 60-day window is over
    assert ts["churn"].notna().eq(mature & (ts["orders_total"] > 0)).all()
    assert ts[names].dtypes.eq(np.float64).all()
    # purchase intent shows up in browsing and recency before an order (the simulator's design):
    buyers, others = ts[ts["repurchase"] == 1], ts[ts["repurchase"] == 0]
    assert len(buyers) > 50
    assert buyers["views_7d"].mean() > others["views_7d"].mean()
    assert buyers["orders_365d"].mean() > others["orders_365d"].mean()
