"""The live shop keeps signing customers up: at the history's rate, with orders and events, covered by the
truth API, deterministic however the days are stepped, and replayable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rebuy.contract import SCHEMAS, TABLES
from rebuy.ingest import concat_messages
from rebuy.simulator import ShopSimulator, SimConfig
from rebuy.simulator.params import LIVE_BLOCK_DAYS, LIVE_RATE_WINDOW

LIVE_DAYS = 60  # three sign-up blocks (28-day blocks: days 0-27, 28-55, 56-59)


def _shop(seed: int = 31) -> tuple[ShopSimulator, dict[str, pd.DataFrame]]:
    sim = ShopSimulator(SimConfig(customers=2000, months=12, seed=seed))
    return sim, sim.run_history()


@pytest.fixture(scope="module")
def live() -> dict[str, object]:
    sim, history = _shop()
    rate = sim.live_signup_rate
    new = sim.step(LIVE_DAYS)
    return {"sim": sim, "history": history, "new": new, "rate": rate}


def _concat(parts: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    out = {t: pd.concat([p[t] for p in parts], ignore_index=True) for t in TABLES if t != "messages"}
    out["messages"] = concat_messages([p["messages"] for p in parts])  # categoricals kept
    return out


def test_rate_is_the_history_rate_over_its_last_quarter(live) -> None:  # type: ignore[no-untyped-def]
    sim, history = live["sim"], live["history"]
    # by hand from the written customers table: sign-ups in the last 91 days of the history, per day
    recent = history["customers"]["signup_at"] >= sim.start + pd.Timedelta(
        days=sim.config.days - LIVE_RATE_WINDOW
    )
    assert live["rate"] == pytest.approx(recent.sum() / LIVE_RATE_WINDOW)


def test_live_days_sign_customers_up_at_that_rate_with_orders_and_events(live) -> None:  # type: ignore[no-untyped-def]
    sim, history, new = live["sim"], live["history"], live["new"]
    for t in TABLES:
        SCHEMAS[t].validate(new[t])
    cust = new["customers"]
    end_of_history = sim.start + pd.Timedelta(days=sim.config.days)
    assert cust["signup_at"].between(end_of_history, sim.now, inclusive="left").all()
    assert not set(cust["customer_id"]) & set(history["customers"]["customer_id"])
    assert cust["customer_id"].is_unique
    # Poisson(rate) a day over LIVE_DAYS days: within 4 standard deviations of rate × days
    mean = live["rate"] * LIVE_DAYS
    assert abs(len(cust) - mean) < 4 * np.sqrt(mean)
    # most first orders happen at sign-up (85 % of customers, binomial; 4 standard deviations)
    signup = cust.set_index("customer_id")["signup_at"]
    orders = new["orders"][new["orders"]["customer_id"].isin(signup.index)]
    same_day = (
        (orders["ordered_at"].dt.floor("D") == orders["customer_id"].map(signup).dt.floor("D"))
        .groupby(orders["customer_id"])
        .any()
    )
    share = same_day.reindex(signup.index, fill_value=False).mean()
    assert abs(share - 0.85) < 4 * np.sqrt(0.85 * 0.15 / len(signup))
    assert (orders["ordered_at"] >= orders["customer_id"].map(signup)).all()
    events = new["events"][new["events"]["customer_id"].isin(signup.index)]
    assert events["customer_id"].nunique() > 0.5 * len(signup)
    assert (events["occurred_at"] >= events["customer_id"].map(signup)).all()


def test_same_population_and_rows_however_the_days_are_stepped(live) -> None:  # type: ignore[no-untyped-def]
    sim, _ = _shop()
    daily = _concat([sim.step(1) for _ in range(LIVE_DAYS)])
    for t in TABLES:
        pd.testing.assert_frame_equal(daily[t], live["new"][t], check_like=False)
    assert np.array_equal(sim.ids, live["sim"].ids)


def test_truth_covers_new_customers_and_replay_matches_their_rows(live) -> None:  # type: ignore[no-untyped-def]
    sim, new = live["sim"], live["new"]
    ids = new["customers"]["customer_id"]
    t = sim.truth(ids, sim.now, horizon_days=30, offers=("none", "coupon_10pct"), spend_days=60, paths=4)
    assert len(t) == len(ids) and t["p_order"].between(0, 1).all()
    assert t["expected_spend"].ge(0).all()
    # they behave like the history's own newest customers: the share still alive after the same span of
    # sign-ups (the last LIVE_DAYS of the history, judged at its end) agrees within 4 standard errors
    hist = live["history"]["customers"]
    end = sim.start + pd.Timedelta(days=sim.config.days)
    cohort = hist.loc[hist["signup_at"] >= end - pd.Timedelta(days=LIVE_DAYS), "customer_id"]
    then = sim.truth(cohort, end, horizon_days=30, offers=("none",), spend_days=None)
    p1, p2 = t["alive"].mean(), then["alive"].mean()
    pooled = (p1 * len(t) + p2 * len(then)) / (len(t) + len(then))
    assert abs(p1 - p2) < 4 * np.sqrt(pooled * (1 - pooled) * (1 / len(t) + 1 / len(then)))
    # the replayed state at a live day counts exactly the orders written before it (new customers included)
    day = sim.config.days + LIVE_BLOCK_DAYS + 5
    st = sim.state_at(day)
    cutoff = sim.start + pd.Timedelta(days=day)
    orders = pd.concat([live["history"]["orders"], new["orders"]], ignore_index=True)
    counts = orders[orders["ordered_at"] < cutoff].groupby("customer_id").size()
    expected = pd.Series(sim.ids).map(counts).fillna(0).astype(int).to_numpy()
    assert np.array_equal(st.n_orders, expected)
    signed = sim.customer_truth()
    assert set(signed["customer_id"]) == set(live["history"]["customers"]["customer_id"]) | set(ids)


def test_save_and_load_regrow_the_live_population(tmp_path, live) -> None:  # type: ignore[no-untyped-def]
    sim, _ = _shop()
    sim.step(LIVE_BLOCK_DAYS + 3)
    sim.save(tmp_path / "truth")
    back = ShopSimulator.load(tmp_path / "truth")
    assert np.array_equal(back.ids, sim.ids)
    a, b = sim.step(LIVE_DAYS - LIVE_BLOCK_DAYS - 3), back.step(LIVE_DAYS - LIVE_BLOCK_DAYS - 3)
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t])
    assert np.array_equal(back.ids, live["sim"].ids)
