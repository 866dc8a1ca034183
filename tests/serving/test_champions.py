"""End to end with the real upstream: champions trained on the small simulated shop, a materialized Feast
online store, and `scorer_from_registry`. Served == `rebuy score` == the offline pipeline (historical
features at the same instant through `features.training_set`, then the bundles) within 1e-6.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

MODELS = ("churn", "repurchase", "days_to_next", "value")
COLUMNS = {"churn": "churn_probability", "repurchase": "repurchase_probability",
           "days_to_next": "expected_days_to_next_order", "value": "expected_value"}


@pytest.fixture(scope="module")
def trained(session_tmp: Path, small_shop: Any) -> tuple[Any, pd.Timestamp]:
    from features.store import materialize
    from features.training_set import build_training_set, cutoff_grid
    from rebuy.config import load_config
    from training.run import known_services, train_specs, with_rfm

    cfg = load_config(None, data_dir=session_tmp / "serving-e2e")
    opt = cfg.training.optuna.model_copy(update={"trials": 3, "timeout_seconds": 60})
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})
    tables = small_shop.tables
    cutoffs = cutoff_grid(cfg, small_shop.sim.now)
    sets = {svc: with_rfm(build_training_set(cfg, svc, cutoffs, tables), tables["orders"])
            for svc in ("churn_v1", "repurchase_v1", "value_v1")}
    train_specs(cfg, list(MODELS), sets, known_services(), show_progress=False)
    as_of = pd.Timestamp(small_shop.sim.now).tz_convert("UTC")
    materialize(cfg, as_of, tables)
    return cfg, as_of


def test_served_equals_batch_equals_offline_pipeline(trained: tuple[Any, pd.Timestamp], small_shop: Any,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from features.training_set import build_training_set
    from serving.batch import score_to_parquet
    from serving.champions import scorer_from_registry

    cfg, as_of = trained
    ids = [*small_shop.tables["customers"]["customer_id"].astype(str).tolist()[:150], "nobody-at-all"]
    scorer = scorer_from_registry(cfg)

    res = score_to_parquet(cfg, as_of, tmp_path / "scores.parquet", ids)
    batch = pd.read_parquet(res.path).set_index("customer_id")
    assert res.cold_start >= 1 and bool(batch.loc["nobody-at-all", "cold_start"])

    prom = tmp_path / "prom"
    prom.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom))
    monkeypatch.setenv("REBUY_DATA_DIR", str(cfg.paths.data_dir))
    monkeypatch.delenv("REBUY_SCORER_FACTORY", raising=False)
    monkeypatch.delenv("REBUY_CONFIG", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient
    from serving.service import RebuyService

    # the in-process service builds its own scorer from the registry and store (the default factory)
    served: list[dict[str, Any]] = []
    with TestClient(RebuyService.to_asgi()) as client:
        for start in range(0, len(ids), 50):
            r = client.post("/score", json={"customer_ids": ids[start:start + 50], "as_of": as_of.isoformat()})
            assert r.status_code == 200, r.text
            served += r.json()["results"]
    assert [s["customer_id"] for s in served] == ids
    assert served[0]["model_versions"] == scorer.model_versions

    known = [c for c in ids if c != "nobody-at-all"]
    for name, col in COLUMNS.items():
        np.testing.assert_allclose([s[col] for s in served], batch.loc[ids, col].to_numpy(), rtol=0, atol=1e-6)
        m = scorer.models[name]
        ts = build_training_set(cfg, m.feature_service, [as_of], small_shop.tables)
        ts = ts.set_index("customer_id")
        have = [c for c in known if c in ts.index]
        assert len(have) >= 0.9 * len(known)
        offline = m.predict(ts.loc[have, list(m.feature_names)].to_numpy(dtype=np.float64))
        np.testing.assert_allclose(batch.loc[have, col].to_numpy(), offline, rtol=0, atol=1e-6)
    for s in served[:20]:
        assert s["reasons"] == json.loads(batch.loc[s["customer_id"], "reasons"])
