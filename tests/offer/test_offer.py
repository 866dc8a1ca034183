"""The decision-log path: outcomes in the attribution window, the served offer model, the promotion gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rebuy.config import OffersConfig
from tests.offer.synth import make_campaign
from training.offer import (
    LoggedSet,
    OfferModel,
    decision_outcomes,
    evaluate_uplift,
    hash_split,
    learn_and_evaluate,
    promotion_decision,
    realised_margin,
    split_logged,
)
from training.uplift import fit_uplift

T0 = pd.Timestamp("2025-03-01 09:00", tz="UTC")


def test_decision_outcomes_by_hand() -> None:
    offers = OffersConfig()  # margin 0.35, coupon: cost 0.02 + 10% redemption, attribution 14 days
    dist = {"none": 0.5, "coupon_10pct": 0.5}
    decisions = pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3"],
            "customer_id": ["a", "b", "c"],
            "decided_at": [T0, T0, T0],
            "offer": ["coupon_10pct", "none", "none"],
            "group": ["treatment", "treatment", "holdout"],
            "propensity": [0.5, 0.5, 1.0],
            "distribution": [dist, dist, {"none": 1.0}],  # d3 was forced: not randomized, dropped
        }
    )
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ordered_at": [
                T0 - pd.Timedelta(days=1),
                T0 + pd.Timedelta(days=2),
                T0 + pd.Timedelta(days=15),
                T0 + pd.Timedelta(days=14),
            ],
            "amount": [50.0, 100.0, 70.0, 40.0],
            "returned_amount": [0.0, 20.0, 0.0, 0.0],
        }
    )
    out = decision_outcomes(decisions, orders, offers).set_index("decision_id")
    assert list(out.index) == ["d1", "d2"]
    # a: only the order 2 days later counts (the earlier one is before, the later one after the window), net 80
    assert out.loc["d1", "revenue"] == 80.0 and out.loc["d1", "conversion"] == 1.0
    assert out.loc["d1", "margin"] == pytest.approx(80 * (0.35 - 0.10) - 0.02)
    # b: the order exactly at the end of the window counts; no offer, no cost
    assert out.loc["d2", "margin"] == pytest.approx(40 * 0.35)
    assert out.loc["d1", "cutoff"] == pd.Timestamp("2025-03-01", tz="UTC")


def test_realised_margin_free_shipping_per_order() -> None:
    offers = OffersConfig()
    m = realised_margin(np.array([100.0]), np.array([2]), np.array(["free_shipping"]), offers)
    assert m[0] == pytest.approx(100 * 0.35 - 2 * offers.shipping_cost - 0.02)


def test_hash_split_is_stable() -> None:
    ids = [f"d{i}" for i in range(2000)]
    a, b = hash_split(ids, 0.3), hash_split(list(reversed(ids)), 0.3)
    assert (a == b[::-1]).all()
    assert 0.25 < a.mean() < 0.35


@pytest.fixture(scope="module")
def logged() -> tuple[LoggedSet, dict]:
    d = make_campaign(6000, seed=31)
    out = pd.DataFrame({"conversion": d["outcomes"]["conversion"], "margin": d["outcomes"]["spend"] * 0.35})
    return LoggedSet(d["X"], d["arm"], d["propensity"], out, ("seg",)), d


def test_offer_model_predicts_conversion_and_margin_and_roundtrips(logged, tmp_path) -> None:
    data, _ = logged
    conv = fit_uplift(data.X, data.arm, data.outcomes[["conversion"]], "none", categorical=("seg",))
    marg = fit_uplift(data.X, data.arm, data.outcomes[["margin"]], "none", categorical=("seg",), learner="x")
    model = OfferModel(conv, marg)
    M = model.margin.encoder.transform(data.X.head(7))
    out = model.predict(M)
    assert set(out) == {"A", "B"} and all(len(v) == 2 and v[0].shape == (7,) for v in out.values())
    back = OfferModel.load(model.save(tmp_path / "offer"), "3")
    assert back.version == "3" and back.feature_names == model.feature_names
    np.testing.assert_allclose(back.predict(M)["A"][1], out["A"][1])


def test_promotion_refuses_a_worse_policy_on_logged_data(logged) -> None:
    data, _ = logged
    train, test = split_logged(data, 0.4, seed=0)
    ev = learn_and_evaluate(train, test, "none", "margin", current="logged")

    # the current policy is the truth's own best choice; a candidate that learned the effects backwards
    # (arms A and none swapped in training) sends A exactly where it hurts, and must be refused
    def oracle(ds: LoggedSet) -> np.ndarray:
        x1, seg = ds.X["x1"].to_numpy(), ds.X["seg"].to_numpy()
        return np.where(x1 > 0.5, "A", np.where(seg == "a", "B", "none")).astype(object)

    worse = fit_uplift(
        train.X,
        np.where(train.arm == "A", "none", np.where(train.arm == "none", "A", train.arm)),
        train.outcomes[["margin"]],
        "none",
        categorical=("seg",),
    )  # arms swapped: learns the opposite
    ev_worse = evaluate_uplift(worse, test, "none", "margin", current=oracle)
    ok, reason = promotion_decision(ev_worse)
    assert not ok and "keep the current policy" in reason
    assert ev_worse.vs_current.value < 0
    # against the logging policy (uniform random arms) the well-learned candidate is valued on the same rows
    assert ev.vs_current is not None and ev.vs_current.value > 0
    assert {"current", "personalised", "everyone:A"} <= set(ev.policies["policy"])


def test_allowed_arms_restrict_every_policy(logged) -> None:
    data, _ = logged
    allowed = pd.DataFrame({"A": np.zeros(len(data), bool), "B": np.ones(len(data), bool)})
    data = LoggedSet(data.X, data.arm, data.propensity, data.outcomes, data.categorical, allowed)
    train, test = split_logged(data, 0.4, seed=0)
    ev = learn_and_evaluate(train, test, "none", "margin")
    ips = ev.policies[(ev.policies["method"] == "ips")].set_index("policy")["value"]
    # "everyone gets A" is not allowed anywhere, so it is valued as "nobody"
    assert ips["everyone:A"] == pytest.approx(ips["everyone:none"])
