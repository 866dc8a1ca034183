"""Online store: byte-compatible with Feast, parity with offline retrieval (also after pushes), incremental runs."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features.compute import FAMILIES, epoch_seconds
from features.online import OnlineFeatureReader
from features.online_store import entity_key_prefix, entity_keys
from features.store import apply, build, feature_store, materialize, online_path, push
from features.training_set import feature_names
from rebuy.contract import empty
from rebuy.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

T = pd.Timestamp("2025-05-01 12:00", tz="UTC")
SERVICE = "offer_v1"


def test_entity_keys_match_feast_encoding():
    ids = ["c1", "ü-ß 42", "", "0012"]
    ours = entity_keys(ids, entity_key_prefix())
    feast = [
        serialize_entity_key(EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=i)]), 3)
        for i in ids
    ]
    assert ours == feast


def _offline(cfg, tables, ids, at):
    """Feast historical retrieval of the service at `at` (from a snapshot built at `at`)."""
    build(cfg, tables, [at])
    fs = feature_store(cfg)
    ent = pd.DataFrame({"customer_id": ids, "event_timestamp": at, "request_ts": epoch_seconds(at)})
    hist = fs.get_historical_features(entity_df=ent, features=fs.get_feature_service(SERVICE)).to_df()
    return hist.set_index("customer_id").loc[ids, feature_names(cfg, SERVICE)].to_numpy(np.float64)


def _feast_online(cfg, ids, at):
    fs = feature_store(cfg)
    rows = [{"customer_id": i, "request_ts": epoch_seconds(at)} for i in ids]
    df = fs.get_online_features(features=fs.get_feature_service(SERVICE), entity_rows=rows).to_df()
    return df[feature_names(cfg, SERVICE)].astype(np.float64).to_numpy()


def _assert_parity(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=1e-6)


def test_parity_online_offline_including_after_push(cfg, make_shop):
    tables = make_shop(7)
    ids = [*list(tables["customers"]["customer_id"][:12]), "never-seen"]
    materialize(cfg, T, tables)
    reader = OnlineFeatureReader(cfg, SERVICE)
    assert reader.feature_names == feature_names(cfg, SERVICE)
    now = T + pd.Timedelta(hours=6)  # request-time features move on after the batch
    x, found, age = reader.read(ids, now)
    assert found.tolist() == [True] * 12 + [False]
    assert np.isnan(x[-1]).all() and np.isnan(age[-1])
    np.testing.assert_allclose(age[:12], 6 * 3600)
    known = ids[:12]
    offline = _offline(cfg, tables, known, T)
    # same stored snapshot, request time = T: reader == Feast online == Feast offline
    _assert_parity(reader.read(known, T)[0], offline)
    _assert_parity(_feast_online(cfg, known, T), offline)
    days = feature_names(cfg, SERVICE).index("days_since_last_order")
    bought = ~np.isnan(offline[:, days])
    assert bought.sum() >= 5
    np.testing.assert_allclose(x[:12, days][bought] - offline[bought, days], 0.25)

    # a burst of views (three customers) and an order arrive; pushed, they are fresh online at once:
    # two customers through rebuy's bulk path, the third through Feast's push source
    t2 = T + pd.Timedelta(hours=2)
    who = known[:3]
    views = pd.DataFrame(
        {
            "customer_id": np.repeat(who, 3),
            "occurred_at": t2 - pd.Timedelta(minutes=5),
            "event_type": "view",
            "category": "tea",
        }
    )
    views["occurred_at"] = views["occurred_at"].dt.as_unit("ns")
    order = (
        tables["orders"].iloc[:1].assign(order_id="pushed-1", customer_id=who[0], ordered_at=t2, amount=42.0)
    )
    history = dict(tables)
    history["orders"] = tables["orders"][tables["orders"]["ordered_at"] <= T]
    history["events"] = tables["events"][tables["events"]["occurred_at"] <= T]
    direct = {"events": views[views["customer_id"].isin(who[:2])], "orders": order}
    assert push(cfg, direct, t2, history=history) == 2
    assert (
        push(cfg, {"events": views[views["customer_id"] == who[2]]}, t2, history=history, via_feast=True) == 1
    )
    after, found, age = reader.read(who, t2)
    v1h = feature_names(cfg, SERVICE).index("views_1h")
    assert (after[:, v1h] >= 3).all() and (after[:, v1h] > x[:3, v1h]).all()
    np.testing.assert_allclose(age, 0.0)
    merged = {
        **history,
        "events": pd.concat([history["events"], views], ignore_index=True),
        "orders": pd.concat([history["orders"], order], ignore_index=True),
    }
    _assert_parity(after, _offline(cfg, merged, who, t2))
    _assert_parity(_feast_online(cfg, who, t2), after)
    reader.close()


def test_incremental_materialization_rewrites_only_changed_customers(cfg, make_shop):
    tables = make_shop(8)
    early = {
        **tables,
        "orders": tables["orders"][tables["orders"]["ordered_at"] <= T],
        "events": tables["events"][tables["events"]["occurred_at"] <= T],
    }
    materialize(cfg, T, early)
    t2 = T + pd.Timedelta(days=3)
    later = {
        **tables,
        "orders": tables["orders"][tables["orders"]["ordered_at"] <= t2],
        "events": tables["events"][tables["events"]["occurred_at"] <= t2],
    }
    changed = set(later["orders"].loc[later["orders"]["ordered_at"] > T, "customer_id"]) | set(
        later["events"].loc[later["events"]["occurred_at"] > T, "customer_id"]
    )
    assert 0 < len(changed) < len(tables["customers"])
    n = materialize(cfg, t2, later, incremental=True)["customers"]
    assert n == len(changed)
    ids = list(tables["customers"]["customer_id"])
    _, found, age = OnlineFeatureReader(cfg, SERVICE).read(ids, t2)
    assert found.all()
    fresh = {i for i, a in zip(ids, age, strict=True) if a == 0}
    assert fresh == changed  # the others keep their earlier snapshot (age 3 days)
    assert {a for a in age if a != 0} == {3 * 86400.0}
    with pytest.raises(DataError, match="before the last one"):
        materialize(cfg, T, early, incremental=True)


def test_orders_only_shop_online(cfg, make_shop):
    tables = make_shop(9)
    tables["events"] = empty("events")
    materialize(cfg, T, tables)
    reader = OnlineFeatureReader(cfg, "repurchase_v1")
    x, found, _ = reader.read(list(tables["customers"]["customer_id"]), T)
    names = reader.feature_names
    assert found.all()
    assert np.isnan(x[:, names.index("views_24h")]).all()
    assert np.isfinite(x[:, names.index("orders_total")]).all()


def test_feast_write_path_reads_back(cfg):
    """Feast's own write_to_online_store (through rebuy's store) and get_online_features, and our reader, agree."""
    apply(cfg)
    fs = feature_store(cfg)
    df = pd.DataFrame({"customer_id": ["x", "y"], "event_timestamp": [T, T]})
    for col in fs.get_feature_view("order_history").features:
        df[col.name] = [1.25, np.nan]
    fs.write_to_online_store("order_history", df)
    x, found, _ = OnlineFeatureReader(cfg, "value_v1").read(["x", "y"], T)
    assert found.tolist() == [True, True]
    names = feature_names(cfg, "value_v1")
    assert x[0, names.index("orders_total")] == 1.25 and np.isnan(x[1, names.index("orders_total")])
    got = fs.get_online_features(
        features=["order_history:orders_total", "order_history:gap_mean_days"],
        entity_rows=[{"customer_id": "x"}, {"customer_id": "y"}, {"customer_id": "z"}],
    )
    got = got.to_dict()
    assert (
        got["orders_total"][0] == 1.25 and got["orders_total"][1] is None and got["orders_total"][2] is None
    )
    with sqlite3.connect(online_path(cfg)) as conn:  # one packed row per customer and view
        assert conn.execute('SELECT count(*) FROM "rebuy_order_history"').fetchone()[0] == 2


def test_forget_customers_removes_online_and_offline_rows(cfg, make_shop):
    from features.online import forget_customers
    from features.store import offline_dir

    tables = make_shop(10, n_customers=10)
    materialize(cfg, T, tables)
    ids = list(tables["customers"]["customer_id"])
    assert forget_customers(cfg, ids[:2]) == 2 * len(FAMILIES)  # one packed row per view
    _, found, _ = OnlineFeatureReader(cfg, SERVICE).read(ids, T)
    assert found.tolist() == [False, False] + [True] * 8
    for path in offline_dir(cfg).glob("*.parquet"):
        assert not pd.read_parquet(path)["customer_id"].isin(ids[:2]).any()


def test_pusher_accumulates_successive_pushes(cfg, tables):
    from features.store import FeaturePusher

    apply(cfg)
    now = pd.Timestamp("2025-03-01", tz="UTC")
    pusher = FeaturePusher(cfg, history=tables)
    reader = OnlineFeatureReader(cfg, "repurchase_v1")
    v1h, carts = reader.feature_names.index("views_1h"), reader.feature_names.index("carts_24h")

    def views(n: int, at: pd.Timestamp, kind: str = "view") -> dict:
        df = pd.DataFrame(
            {"customer_id": ["b"] * n, "occurred_at": [at] * n, "event_type": kind, "category": "X"}
        )
        df["occurred_at"] = df["occurred_at"].dt.as_unit("ns")
        return {"events": df}

    assert pusher.push(views(2, now - pd.Timedelta(minutes=20)), now) == 1
    assert reader.read(["b"], now)[0][0, v1h] == 2  # b had no views in the history
    pusher.push(views(1, now + pd.Timedelta(minutes=5), "cart"), now + pd.Timedelta(minutes=10))
    x = reader.read(["b"], now)[0][0]
    assert x[v1h] == 2 and x[carts] == 1  # the earlier push is still counted
    pusher.close()
    reader.close()
