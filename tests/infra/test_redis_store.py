"""The Redis online store on a real server: Feast's own reader sees what rebuy writes, and rebuy's readers
return exactly what they return on the SQLite store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import FAMILIES, epoch_seconds
from features.online import OnlineFeatureReader, OnlineStoreReader, forget_customers
from features.store import apply, feature_store, materialize
from features.training_set import feature_names
from tests.features.conftest import random_shop

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

T = pd.Timestamp("2025-05-01 12:00", tz="UTC")
SERVICES = ["churn_v1", "repurchase_v1", "value_v1", "offer_v1"]


def _feast_online(cfg, service, ids, at) -> np.ndarray:
    fs = feature_store(cfg)
    rows = [{"customer_id": i, "request_ts": epoch_seconds(at)} for i in ids]
    df = fs.get_online_features(features=fs.get_feature_service(service), entity_rows=rows).to_df()
    return df[feature_names(cfg, service)].astype(np.float64).to_numpy()


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(np.nan_to_num(a), np.nan_to_num(b))


def test_feature_store_yaml_names_redis(tmp_path, infra, namespace, stores_config) -> None:
    cfg = stores_config(tmp_path, online_store="redis://127.0.0.1:6379/3")
    fs = feature_store(cfg)
    assert fs.config.project == f"rebuy_{namespace}"
    assert fs.config.online_store.type == "redis"
    assert fs.config.online_store.connection_string == "127.0.0.1:6379,db=3"


def test_materialize_parity_with_feast_reader_and_sqlite(tmp_path, infra, namespace, stores_config) -> None:
    """The same shop materialized into Redis and SQLite: Feast's Redis reader, rebuy's Redis reader and
    rebuy's SQLite reader return bit-identical matrices, missing values included."""
    tables = random_shop(7)
    ids = [*list(tables["customers"]["customer_id"][:15]), "never-seen"]
    red = stores_config(tmp_path / "r", online_store=infra.redis_url)
    lite = stores_config(tmp_path / "s")
    materialize(red, T, tables)
    materialize(lite, T, tables)
    for svc in SERVICES:
        xr, fr, ar = OnlineFeatureReader(red, svc).read(ids, T)
        xs, fs_, as_ = OnlineFeatureReader(lite, svc).read(ids, T)
        _same(xr, xs)
        assert fr.tolist() == fs_.tolist() == [True] * 15 + [False]
        _same(ar, as_)
        feast = _feast_online(red, svc, ids[:15], T)  # Feast's own RedisOnlineStore.online_read
        _same(feast, xr[:15])
        assert np.isnan(xr).any() and np.isfinite(xr).any()  # the check covers both encodings
    shared = OnlineStoreReader(red, SERVICES)
    got = shared.read_services(SERVICES, [ids[3], "never-seen", ids[3]], T)
    for svc in SERVICES:
        want = OnlineFeatureReader(lite, svc).read([ids[3], "never-seen", ids[3]], T)
        for a, b in zip(got[svc], want, strict=True):
            _same(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    shared.close()


def test_feast_writer_and_push_read_back(tmp_path, infra, namespace, stores_config) -> None:
    """Rows written by Feast's own Redis writer (other value encodings, nulls) read back through rebuy."""
    cfg = stores_config(tmp_path, online_store=infra.redis_url)
    apply(cfg)
    fs = feature_store(cfg)
    df = pd.DataFrame({"customer_id": ["x", "y"], "event_timestamp": [T, T]})
    for col in fs.get_feature_view("order_history").features:
        df[col.name] = [1.25, np.nan]
    fs.write_to_online_store("order_history", df)
    x, found, age = OnlineFeatureReader(cfg, "value_v1").read(["x", "y", "z"], T)
    names = feature_names(cfg, "value_v1")
    assert found.tolist() == [True, True, False]
    assert x[0, names.index("orders_total")] == 1.25 and np.isnan(x[1, names.index("orders_total")])
    assert age[0] == 0.0


def test_forget_deletes_every_view_and_only_those_customers(
    tmp_path, infra, namespace, stores_config, redis_client
) -> None:
    tables = random_shop(10, n_customers=10)
    cfg = stores_config(tmp_path, online_store=infra.redis_url)
    materialize(cfg, T, tables)
    ids = list(tables["customers"]["customer_id"])
    assert forget_customers(cfg, ids[:2]) == 2 * len(FAMILIES)
    assert forget_customers(cfg, ids[:2]) == 0  # idempotent
    _, found, _ = OnlineFeatureReader(cfg, "offer_v1").read(ids, T)
    assert found.tolist() == [False, False] + [True] * 8
    project = f"rebuy_{namespace}".encode()
    assert len([k for k in redis_client.scan_iter(match=b"*" + project) if k.endswith(project)]) == 8


def test_push_reaches_redis(tmp_path, infra, namespace, stores_config) -> None:
    from features.store import FeaturePusher

    tables = random_shop(12, n_customers=8)
    cfg = stores_config(tmp_path, online_store=infra.redis_url)
    materialize(cfg, T, tables)
    who = str(tables["customers"]["customer_id"].iloc[0])
    reader = OnlineFeatureReader(cfg, "repurchase_v1")
    v1h = reader.feature_names.index("views_1h")
    now = T + pd.Timedelta(minutes=30)
    ev = pd.DataFrame(
        {"customer_id": [who] * 3, "occurred_at": [now - pd.Timedelta(minutes=5)] * 3, "event_type": "view"}
    )
    ev["category"] = "tea"
    ev["occurred_at"] = ev["occurred_at"].dt.as_unit("ns")
    pusher = FeaturePusher(cfg, history=tables)
    try:
        assert pusher.push({"events": ev}, now) == 1
    finally:
        pusher.close()
    x, found, age = reader.read([who], now)
    assert found[0] and x[0, v1h] >= 3 and age[0] == 0.0
