"""The closed loop: decisions reach the simulated shop, orders flow back, truth sits beside every decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.loop import closed_loop, compare_with_truth, messages_for_sim
from rebuy.config import Config, load_config
from tests.support.fake_client import FakeScoreClient


def _cfg(tmp_path: Path, attribution_days: int, every_hours: int = 1) -> Config:
    cfg = load_config(data_dir=tmp_path)
    schedule = cfg.policy.schedule.model_copy(update={"every_hours": every_hours})
    return cfg.model_copy(
        update={
            "offers": cfg.offers.model_copy(update={"attribution_days": attribution_days}),
            "policy": cfg.policy.model_copy(update={"schedule": schedule}),
        }
    )


def test_only_treated_offers_reach_the_shop() -> None:
    d = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "decided_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "offer": ["coupon_10pct", "none", "coupon_10pct", "care_message"],
            "channel": ["email", "none", "email", "push"],
            "group": ["treatment", "treatment", "control", "treatment"],
        }
    )
    assert messages_for_sim(d)["customer_id"].tolist() == ["a", "d"]


def test_measured_and_true_uplift_on_hand_rows(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, attribution_days=7)
    t0 = pd.Timestamp("2025-03-01 10:00", tz="UTC")
    ids = [f"c{i}" for i in range(8)]
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(8)],
            "customer_id": ids,
            "decided_at": t0,
            "campaign": "x",
            "offer": ["coupon_10pct"] * 4 + ["none"] * 4,
            "group": ["treatment"] * 4 + ["control"] * 4,
            "segment": "all",
        }
    )
    # treated c0, c1 buy inside the window; c2 buys after it closes; control c4 buys inside
    orders = pd.DataFrame(
        {
            "customer_id": ["c0", "c1", "c2", "c4"],
            "ordered_at": [t0 + pd.Timedelta(days=d) for d in (1, 6, 9, 2)],
            "amount": 10.0,
            "returned_amount": 0.0,
        }
    )
    truth = pd.DataFrame(
        {
            "decision_id": decisions["decision_id"],
            "p_offer": [0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1],
            "p_none": [0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1],
        }
    )
    out = compare_with_truth(cfg, decisions, orders, truth, t0 + pd.Timedelta(days=30))
    assert out["treated"] == 4 and out["control"] == 4
    assert out["measured_uplift"] == pytest.approx(2 / 4 - 1 / 4)
    assert out["true_uplift"] == pytest.approx(np.mean([0.3, 0.2, 0.1, 0.0]))
    lo, hi = out["measured_ci"]
    assert lo < out["measured_uplift"] < hi
    assert out["covered"] == (lo <= out["true_uplift"] <= hi)


def test_closed_loop_decides_the_shop_reacts_and_truth_sits_beside_each_decision(tmp_path: Path) -> None:
    from features.store import apply
    from pipelines.decision_log import engine_for, read_decisions
    from rebuy.ingest import write_canonical
    from rebuy.simulator import ShopSimulator, SimConfig

    sim = ShopSimulator(SimConfig(customers=800, months=12, seed=5))
    tables = sim.run_history()
    cfg = _cfg(tmp_path, attribution_days=2, every_hours=6)  # passes at 00, 06, 12, 18 UTC
    write_canonical(tables, cfg.paths.data_dir)
    apply(cfg)
    start, n_orders = sim.now, len(tables["orders"])
    days: list[int] = []

    result, grown = closed_loop(
        cfg, sim, tables, FakeScoreClient(), days=5, on_day=lambda d, s: days.append(d)
    )

    assert sim.now == start + pd.Timedelta(days=5) and days == [0, 1, 2, 3, 4]
    assert len(result.passes) == 5 and all(p["passes"] == 4 for p in result.passes)
    assert len(grown["orders"]) > n_orders  # the shop kept buying, and the orders came back
    assert grown["orders"]["ordered_at"].max() <= sim.now
    engine = engine_for(cfg.decision_log_url)
    with engine.connect() as conn:
        logged = read_decisions(conn)
    engine.dispose()
    assert len(logged) > 0
    # every customer decided at most once a day, always at a waking hour of their own timezone -- including
    # Sydney, whose evening 21:00 (quiet) is when the old once-a-day 10:00 UTC pass ran
    zone = grown["customers"].set_index("customer_id")["timezone"]
    local = [
        t.tz_convert(zone[c]).hour for c, t in zip(logged["customer_id"], logged["decided_at"], strict=True)
    ]
    assert all(8 <= h < 21 for h in local)
    assert (zone.reindex(logged["customer_id"]) == "Australia/Sydney").any()
    gaps = logged.sort_values("decided_at").groupby("customer_id")["decided_at"].diff().dropna()
    assert (gaps >= pd.Timedelta(hours=24)).all()
    assert sorted(result.truth["decision_id"]) == sorted(logged["decision_id"])
    t = result.truth
    assert t["p_offer"].between(0, 1).all() and t["p_none"].between(0, 1).all()
    no_action = t["offer"] == "none"
    assert np.allclose(t.loc[no_action, "p_offer"], t.loc[no_action, "p_none"])
    assert result.comparison["matured_decisions"] > 0
    assert np.isfinite(result.comparison["true_uplift"])
