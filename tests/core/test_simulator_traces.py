"""Issue #17 on the default shop (20k customers, 24 months, seed 17 fixed before looking; parameters were
tuned on seed 3): hidden traits leave their traces (`rebuy.simulator.params.TraceParams`), the newsletter
runs, and a plain message moves conversion and visits as a public randomized e-mail test says."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from rebuy.simulator import ShopSimulator, SimConfig

pytestmark = pytest.mark.slow
SEED = 17
OFFERS = ("none", "care_message", "coupon_10pct", "free_shipping", "points_x2", "wake_up_gift")


@pytest.fixture(scope="module")
def shop() -> tuple[ShopSimulator, dict[str, pd.DataFrame]]:
    sim = ShopSimulator(SimConfig(customers=20_000, months=24, seed=SEED))
    return sim, sim.run_history()


def _consent_email_now(tables: dict[str, pd.DataFrame]) -> pd.Series:
    cons = tables["customers"].set_index("customer_id")["consent_email"].copy()
    cu = tables["consent_updates"]
    last = cu[cu["channel"] == "email"].sort_values("changed_at").groupby("customer_id")["consent"].last()
    cons.loc[last.index] = last
    return cons


def test_price_sensitivity_shows_in_discount_share(shop) -> None:  # type: ignore[no-untyped-def]
    sim, tables = shop
    truth = sim.customer_truth().set_index("customer_id")
    g = tables["orders"].groupby("customer_id")["discount"].agg(n="size", share=lambda d: (d > 0).mean())
    g = g[g["n"] >= 3]
    rho = spearmanr(truth.loc[g.index, "price_sensitivity"], g["share"])[0]
    assert 0.3 <= rho <= 0.65, rho


def test_message_aversion_shows_in_newsletter_opens(shop) -> None:  # type: ignore[no-untyped-def]
    sim, tables = shop
    truth = sim.customer_truth().set_index("customer_id")
    w0 = sim.now - pd.Timedelta(days=90)
    m, ev = tables["messages"], tables["events"]
    sent = m[m["sent_at"] >= w0].groupby(m["customer_id"].astype(object)).size()
    opens = ev[(ev["event_type"] == "email_open") & (ev["occurred_at"] >= w0)].groupby("customer_id").size()
    cons = _consent_email_now(tables)
    ok = sent[sent >= 8].index.intersection(cons[cons].index)
    assert len(ok) > 5000
    rate = opens.reindex(ok).fillna(0) / sent.loc[ok]
    auc = roc_auc_score(truth.loc[ok, "message_averse"].astype(int), -rate)
    assert auc >= 0.70, auc


def test_weekly_newsletter_to_consented_customers_from_day_one(shop) -> None:  # type: ignore[no-untyped-def]
    sim, tables = shop
    m = tables["messages"]
    days = ((m["sent_at"] - sim.start).dt.days // 7).unique()
    assert (m["source"] == "newsletter").all() and (m["channel"] == "email").all()
    assert len(days) >= 103  # every week of the 24 months (the first day has nobody signed up yet)
    assert m["message_id"].is_unique
    # the last newsletter reached exactly the customers consented to e-mail at that moment
    last = m[m["sent_at"] >= m["sent_at"].max().normalize()]
    cons = _consent_email_now(tables)
    assert len(last) == pytest.approx(cons.sum(), rel=0.02)
    unsub = tables["consent_updates"]
    assert ((unsub["channel"] == "email") & ~unsub["consent"]).sum() > 0.05 * len(tables["customers"])


def test_calibration_against_a_public_email_test(shop) -> None:  # type: ignore[no-untyped-def]
    """64,000 past-year buyers: one plain e-mail raised 14-day conversion 0.57 % -> 0.88-1.25 % and visits
    10.6 % -> 15.1-18.3 %. Conversion from the truth API's exact probabilities; visits from both arms stepped
    on copies of one shop (the same seeded streams: common random numbers)."""
    sim, tables = shop
    o = tables["orders"]
    last = o.groupby("customer_id")["ordered_at"].max()
    cons = _consent_email_now(tables)
    recent = last[last >= sim.now - pd.Timedelta(days=365)].index
    ids = [c for c in recent if cons.get(c, False)]
    t = sim.truth(ids, sim.now, horizon_days=14, offers=OFFERS, spend_days=None, channel="email", paths=1)
    lift_pp = 100 * (t["p_order__care_message"].mean() - t["p_order__none"].mean())
    assert 0.3 <= lift_pp <= 1.5, lift_pp
    ps = sim.customer_truth().set_index("customer_id").loc[ids, "price_sensitivity"].to_numpy()
    lo, hi = np.quantile(ps, [1 / 3, 2 / 3])
    for offer in ("coupon_10pct", "free_shipping"):
        top, bottom = ps >= hi, ps <= lo
        assert t[f"p_order__{offer}"][top].mean() > t["p_order__care_message"][top].mean(), offer
        assert t[f"p_order__{offer}"][bottom].mean() < t["p_order__care_message"][bottom].mean(), offer
    sent, quiet = copy.deepcopy(sim), copy.deepcopy(sim)
    dec = pd.DataFrame(
        {"customer_id": ids, "decided_at": sim.now, "offer": "care_message", "channel": "email"}
    )

    def visited(new: dict[str, pd.DataFrame]) -> float:
        ev = new["events"]
        return float(pd.Index(ids).isin(ev.loc[ev["event_type"] == "view", "customer_id"]).mean())

    ratio = visited(sent.step(14, dec)) / visited(quiet.step(14, None))
    assert 1.2 <= ratio <= 1.8, ratio
    # fatigue: messaged daily for two weeks ends below never messaged
    daily = copy.deepcopy(sim)
    sub = ids[:3000]
    for _ in range(14):
        daily.step(1, dec.iloc[:3000].assign(decided_at=daily.now))
    p_daily = daily.truth(sub, daily.now, horizon_days=30, offers=("none",), spend_days=None)["p_order"]
    p_never = quiet.truth(sub, quiet.now, horizon_days=30, offers=("none",), spend_days=None)["p_order"]
    assert p_daily.mean() < p_never.mean()
