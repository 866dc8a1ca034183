"""Training sets through Feast: the as-of join is the hand-written one, and no future row leaks into a cutoff."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from features.compute import REQUEST_TIME, compute_features, epoch_seconds, request_time_features
from features.feature_repo.definitions import (
    SERVICE_VERSION,
    SERVICES,
    VERSIONS,
    model_features,
    service_name,
)
from features.labels import LABELS
from features.store import build, offline_dir
from features.training_set import build_training_set, cutoff_grid, data_end, feature_names
from rebuy.config import Config, FeaturesConfig, HorizonsConfig

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

CUTOFFS = [pd.Timestamp(d, tz="UTC") for d in ("2025-03-01", "2025-04-12", "2025-05-20")]


def _same(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> None:
    np.testing.assert_allclose(a[cols].to_numpy(np.float64), b[cols].to_numpy(np.float64), rtol=0, atol=1e-9)


def test_feature_names_are_the_service_contract(cfg):
    for model, families in SERVICES.items():
        names = feature_names(cfg, service_name(model))
        stored = [f for fam in families for f in model_features(fam)]
        request = VERSIONS[SERVICE_VERSION][model][1] or tuple(REQUEST_TIME)
        assert names == stored + list(request)  # view order, then request-time features
        assert not any(n.endswith("_at") for n in names)  # raw instants only feed request-time features
    # offer_v2 sees the contact history; the v2 services of the other models keep the features they shipped with
    assert "messages_7d" in feature_names(cfg, "offer_v2") and "days_since_message" in feature_names(
        cfg, "offer_v2"
    )
    assert not any("message" in n for n in feature_names(cfg, "churn_v2"))
    assert "views_1h" not in feature_names(cfg, "churn_v1") and "views_1h" in feature_names(
        cfg, "repurchase_v1"
    )


def test_cutoff_grid_matures_before_as_of_and_ends_at_each_horizon():
    cfg = Config(
        horizons=HorizonsConfig(churn_days=60, repurchase_days=30, value_days=90),
        features=FeaturesConfig(cutoff_step_days=14, history_days=56),
    )
    as_of = pd.Timestamp("2025-06-30 15:00", tz="UTC")
    # the lattice: back from 2025-05-31, the latest midnight with 30 days (the shortest horizon) before as_of
    short = cutoff_grid(cfg, as_of, horizon_days=30)
    assert short == [
        pd.Timestamp(d, tz="UTC")
        for d in ("2025-04-05", "2025-04-19", "2025-05-03", "2025-05-17", "2025-05-31")
    ]
    # 60 days: 2025-05-03 + 60 d is after as_of, so the grid ends one step earlier, at 2025-04-19
    assert cutoff_grid(cfg, as_of, horizon_days=60)[-1] == pd.Timestamp("2025-04-19", tz="UTC")
    # default = the longest horizon (90 d: the latest lattice point <= 2025-04-01 15:00)
    grid = cutoff_grid(cfg, as_of)
    assert grid == cutoff_grid(cfg, as_of, horizon_days=90)
    assert grid[-1] == pd.Timestamp("2025-03-22", tz="UTC")
    assert [(b - a).days for a, b in itertools.pairwise(grid)] == [14] * 4
    assert len(grid) == 5 and grid[0] == grid[-1] - pd.Timedelta(days=56)
    # all horizons share the lattice, so a run's snapshots are the union of few extra cutoffs
    assert all((short[-1] - c).days % 14 == 0 for h in (30, 60, 90) for c in cutoff_grid(cfg, as_of, h))
    # a cutoff exactly `horizon` before as_of is mature
    exact = Config(
        horizons=HorizonsConfig(churn_days=58, repurchase_days=30, value_days=86),
        features=FeaturesConfig(cutoff_step_days=14, history_days=56),
    )
    midnight = pd.Timestamp("2025-06-30", tz="UTC")
    assert cutoff_grid(exact, midnight, horizon_days=58)[-1] == pd.Timestamp("2025-05-03", tz="UTC")
    assert cutoff_grid(exact, midnight)[-1] == pd.Timestamp("2025-04-05", tz="UTC")


def test_labels_are_known_up_to_the_latest_order_or_event(tables):
    from rebuy.contract import empty
    from rebuy.errors import DataError

    # the hand-written shop's latest row is the order of Mar 2 (the events end at C + 1 h, Mar 1)
    assert data_end(tables) == pd.Timestamp("2025-03-02", tz="UTC")
    later = tables["events"].iloc[:1].assign(occurred_at=pd.Timestamp("2025-03-05 10:00", tz="UTC"))
    with_later = dict(tables, events=pd.concat([tables["events"], later], ignore_index=True))
    assert data_end(with_later) == pd.Timestamp("2025-03-05 10:00", tz="UTC")
    with pytest.raises(DataError, match="no orders or events"):
        data_end({"orders": empty("orders"), "events": empty("events")})


def test_training_set_equals_a_hand_written_as_of_join(cfg, make_shop):
    tables = make_shop(3)
    # decoy snapshots just before and after each cutoff: the join must pick the one AT the cutoff
    decoys = [c + pd.Timedelta(hours=h) for c in CUTOFFS for h in (-30, 5)]
    build(cfg, tables, decoys)
    out = build_training_set(cfg, "offer_v1", CUTOFFS, tables, as_of=pd.Timestamp("2025-09-01", tz="UTC"))
    names = feature_names(cfg, "offer_v1")
    assert list(out.columns) == ["customer_id", "cutoff", *names, *LABELS]

    # the hand-written as-of join over the stored offline snapshots (pandas merge_asof per family)
    ent = out[["customer_id", "cutoff"]].sort_values("cutoff")
    joined = ent.copy()
    for path in sorted(offline_dir(cfg).glob("*.parquet")):
        snap = pd.read_parquet(path).sort_values("event_timestamp")
        snap["event_timestamp"] = pd.to_datetime(snap["event_timestamp"], utc=True).dt.as_unit("ns")
        m = pd.merge_asof(
            ent, snap, left_on="cutoff", right_on="event_timestamp", by="customer_id", direction="backward"
        )
        for col in snap.columns.drop(["customer_id", "event_timestamp"]):
            joined[col] = m[col].to_numpy()
    rt = request_time_features(joined, epoch_seconds(joined["cutoff"]))
    for name, values in rt.items():
        joined[name] = values
    joined = joined.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    _same(out, joined, names)
    # and both equal the features computed directly at the cutoffs
    direct = compute_features(tables, out[["customer_id", "cutoff"]])
    stored = [n for n in names if n not in REQUEST_TIME]
    _same(out, direct, stored)
    assert out["orders_total"].gt(0).any() and out["views_7d"].gt(0).any()  # not a vacuous comparison


def _mutate_after(tables: dict, t: pd.Timestamp, seed: int) -> dict:
    """Add, delete and alter rows timestamped after `t` (orders, events and their attributes)."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}
    o, e = out["orders"], out["events"]
    late_o, late_e = o["ordered_at"] > t, e["occurred_at"] > t
    o.loc[late_o, "amount"] = o.loc[late_o, "amount"] * 3 + 7  # altered
    o.loc[late_o, "category"] = "other"
    e.loc[late_e, "event_type"] = "view"
    e.loc[late_e, "occurred_at"] = e.loc[late_e, "occurred_at"] + pd.Timedelta(minutes=1)
    drop_e = late_e & (rng.random(len(e)) < 0.3)  # deleted
    drop_o = late_o & (rng.random(len(o)) < 0.3)
    ids = o["customer_id"].unique()[:10]
    added_o = pd.DataFrame(
        {  # added, including exactly one nanosecond after the cutoff
            "order_id": [f"new{i}" for i in range(10)],
            "customer_id": ids,
            "ordered_at": t + pd.to_timedelta(np.r_[1, rng.integers(1, 10**14, 9)], unit="ns"),
            "amount": 100.0,
            "category": "tea",
            "discount": 0.0,
            "items": 1,
            "returned_amount": 0.0,
        }
    )
    added_e = pd.DataFrame(
        {
            "customer_id": ids,
            "occurred_at": t + pd.Timedelta(seconds=1),
            "event_type": "email_open",
            "category": None,
        }
    )
    out["orders"] = pd.concat([o.loc[~drop_o], added_o], ignore_index=True)
    out["events"] = pd.concat([e.loc[~drop_e], added_e], ignore_index=True)
    if "messages" in out:  # contact history: later sends altered, deleted and added
        m = out["messages"]
        late_m = m["sent_at"] > t
        m.loc[late_m, "channel"] = "email"
        m.loc[late_m, "offer"] = "wake_up_gift"
        added_m = pd.DataFrame(
            {
                "message_id": [f"newm{i}" for i in range(10)],
                "customer_id": ids,
                "sent_at": t + pd.to_timedelta(np.r_[1, rng.integers(1, 10**14, 9)], unit="ns"),
                "channel": "push",
                "source": "rebuy",
                "campaign": "c",
                "offer": "coupon_10pct",
            }
        )
        drop_m = late_m & (rng.random(len(m)) < 0.3)
        out["messages"] = pd.concat([m.loc[~drop_m], added_m], ignore_index=True)
        u = out["consent_updates"]
        added_u = pd.DataFrame(
            {
                "customer_id": ids,
                "changed_at": t + pd.Timedelta(seconds=1),
                "channel": "email",
                "consent": False,
            }
        )
        out["consent_updates"] = pd.concat([u.loc[u["changed_at"] <= t], added_u], ignore_index=True)
    return out


def _spark_skip() -> pytest.MarkDecorator:
    import os

    from features.spark import spark_available

    ok = os.environ.get("REBUY_TEST_INFRA") == "1" and spark_available()
    return pytest.mark.skipif(not ok, reason="Spark tests run with REBUY_TEST_INFRA=1 and pyspark installed")


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=_spark_skip())])
def test_no_leakage_from_rows_after_a_cutoff(tmp_path, make_shop, engine):
    tables = make_shop(5)
    cut = CUTOFFS[1]
    names = feature_names(Config(), "repurchase_v1")

    def cfg(folder: str) -> Config:
        return Config(paths={"data_dir": tmp_path / folder}, engine={"compute": engine})

    base = build_training_set(cfg("a"), "repurchase_v1", CUTOFFS, tables)
    changed = build_training_set(cfg("b"), "repurchase_v1", CUTOFFS, _mutate_after(tables, cut, 1))
    upto = base["cutoff"] <= cut
    assert upto.sum() > 20
    pd.testing.assert_frame_equal(
        base.loc[upto, ["customer_id", "cutoff", *names]],
        changed.loc[upto, ["customer_id", "cutoff", *names]],
    )
    # the mutation is real: features after the cutoff and labels at it do change
    later = ~upto
    assert not base.loc[later, names].equals(changed.loc[later, names])
    assert not base.loc[upto, "spend_next"].equals(changed.loc[upto, "spend_next"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_leakage_pure_features(make_shop, seed):
    tables = make_shop(seed, contact=True)
    cut = CUTOFFS[seed % 3]
    pairs = pd.DataFrame({"customer_id": tables["customers"]["customer_id"], "cutoff": cut})
    a = compute_features(tables, pairs)
    b = compute_features(_mutate_after(tables, cut, seed), pairs)
    pd.testing.assert_frame_equal(a, b)


def test_offline_snapshots_replace_same_time_and_keep_others(cfg, tables):
    from features.store import write_offline

    t1, t2 = CUTOFFS[0], CUTOFFS[1]
    write_offline(cfg, compute_features(tables, [t1, t2]))
    first = pd.read_parquet(offline_dir(cfg) / "order_history.parquet")
    changed = dict(tables, orders=tables["orders"].assign(amount=1.0))
    write_offline(cfg, compute_features(changed, [t2]))
    after = pd.read_parquet(offline_dir(cfg) / "order_history.parquet")
    assert len(after) == len(first)  # t2 replaced, not appended
    at = after.set_index(["event_timestamp", "customer_id"])["spend_total"]
    before = first.set_index(["event_timestamp", "customer_id"])["spend_total"]
    assert at.loc[t1].equals(before.loc[t1])  # t1 kept as it was
    assert at.loc[(t2, "a")] == 4.0  # a's four orders up to Apr 12, now 1.0 each
