"""`rebuy score --engine spark` equals `rebuy score`: same champions (LightGBM text + JSON), Spark reading the
snapshots partitioned by cutoff vs the online store after the same materialization; every score within 1e-9."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.store import materialize
from features.training_set import feature_names
from rebuy.config import Config, EngineConfig, PathsConfig
from serving.batch import ChampionFiles, score_to_parquet, score_to_parquet_spark
from serving.champions import high_value_cut, load_readers
from serving.scorer import Scorer
from training.registry import read_bundle_dir
from training.segments import segment

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::RuntimeWarning", "ignore::UserWarning"
)

SNAPSHOT = pd.Timestamp("2025-06-01", tz="UTC")
AS_OF = SNAPSHOT + pd.Timedelta(days=3, hours=5)  # request-time features and feature age are not trivial
MODELS = {
    "churn": "churn_v2",
    "repurchase": "repurchase_v2",
    "days_to_next": "repurchase_v2",
    "value": "value_v2",
}


def _bundle(folder: Path, cfg: Config, service: str, feats: pd.DataFrame, binary: bool, seed: int) -> Path:
    """A champion bundle as training writes it: model.lgb (native text), meta.json, calibrator.json."""
    from features.compute import epoch_seconds, request_time_features

    names = feature_names(cfg, service)
    rt = request_time_features(feats, epoch_seconds(feats["cutoff"]))
    X = np.column_stack([rt[n] if n in rt else feats[n].to_numpy(np.float64) for n in names])
    rng = np.random.default_rng(seed)
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1])
    y = (signal > np.median(signal)).astype(float) if binary else signal + rng.normal(0, 1, len(X))
    params = {"objective": "binary" if binary else "regression", "num_leaves": 7, "verbose": -1}
    booster = lgb.train({**params, "num_threads": 1, "seed": seed}, lgb.Dataset(X, y), num_boost_round=8)
    (folder / "extra_files").mkdir(parents=True)
    booster.save_model(str(folder / "model.lgb"))
    meta = {"feature_names": names, "feature_service": service, "objective": params["objective"]}
    if not binary:
        meta["value_cut"] = float(np.quantile(booster.predict(X), 0.8))
    cal = {"method": "platt", "a": 0.9, "b": -0.1} if binary else {"method": "identity"}
    (folder / "extra_files" / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / "extra_files" / "calibrator.json").write_text(json.dumps(cal), encoding="utf-8")
    return folder


def test_spark_batch_scores_equal_rebuy_score(tmp_path, small_shop, spark_engine):
    tables = small_shop.tables
    cfg = Config(paths=PathsConfig(data_dir=tmp_path / "data"), engine=EngineConfig(compute="spark"))
    materialize(cfg, SNAPSHOT, tables)  # Spark computes; online store and partitioned snapshots written
    from features.compute import compute_features, customer_pairs

    feats = compute_features(tables, customer_pairs(tables["customers"], [SNAPSHOT]))
    dirs = {
        name: _bundle(tmp_path / "bundles" / name, cfg, svc, feats, name in ("churn", "repurchase"), i)
        for i, (name, svc) in enumerate(MODELS.items())
    }
    champions = ChampionFiles(
        models={n: (f"rebuy-{n}", "3", ChampionFiles.files(d)) for n, d in dirs.items()},
        offer=None,
        config_json=cfg.model_dump_json(by_alias=True),
    )
    models = {n: read_bundle_dir(d, f"rebuy-{n}", "3") for n, d in dirs.items()}
    scorer = Scorer(
        models=models,
        readers=load_readers(cfg, set(MODELS.values())),
        segmenter=partial(segment, cut=high_value_cut(models["value"].meta, cfg), cfg=cfg.training.segments),
        catalogue=tuple(cfg.offers.catalogue),
    )
    ids = [*tables["customers"]["customer_id"].astype(str), "unknown-1"]
    ref = score_to_parquet(cfg, AS_OF, tmp_path / "scores.parquet", ids, scorer=scorer)
    got = score_to_parquet_spark(cfg, AS_OF, tmp_path / "scores-spark", ids, champions=champions)

    a = pd.read_parquet(ref.path).sort_values("customer_id").reset_index(drop=True)
    b = pd.read_parquet(got.path).sort_values("customer_id").reset_index(drop=True)
    assert list(b.columns) == list(a.columns)
    assert b["customer_id"].tolist() == a["customer_id"].tolist() and len(a) == len(ids)
    assert (b["as_of"].dt.as_unit("ns") == a["as_of"].dt.as_unit("ns")).all()
    for col in a.columns:
        if col in ("customer_id", "as_of"):
            continue
        if a[col].dtype.kind == "f":
            x, y = a[col].to_numpy(np.float64), b[col].to_numpy(np.float64)
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=col)
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col)
        elif col == "reasons":
            for r1, r2 in zip(a[col], b[col], strict=True):
                r1, r2 = json.loads(r1), json.loads(r2)
                assert [(r["model"], r["feature"]) for r in r1] == [(r["model"], r["feature"]) for r in r2]
                np.testing.assert_allclose(
                    [r["contribution"] for r in r2], [r["contribution"] for r in r1], rtol=1e-9, atol=1e-9
                )
        else:
            assert b[col].tolist() == a[col].tolist(), col
    assert got.customers == ref.customers and got.cold_start == ref.cold_start >= 1
    assert got.model_versions == ref.model_versions
    assert a["segment"].nunique() > 1 and a["feature_age_seconds"].dropna().eq(3 * 86400 + 5 * 3600).all()
