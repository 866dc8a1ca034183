"""The decision-log path: outcomes in the attribution window, the served offer model, the promotion gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rebuy.config import OffersConfig
from tests.offer.synth import make_campaign
from training.offer import (
    Economics,
    LoggedSet,
    OfferModel,
    decision_outcomes,
    evaluate_uplift,
    hash_split,
    learn_and_evaluate,
    learn_offer_model,
    measured_effects,
    personalised_actions,
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


def _margin_set(n: int, seed: int, scenario: str) -> LoggedSet:
    d = make_campaign(n, seed=seed, scenario=scenario)
    conv, spend = d["outcomes"]["conversion"], d["outcomes"]["spend"]
    out = pd.DataFrame({"conversion": conv, "margin": spend * 0.35, "revenue": spend, "n_orders": conv})
    return LoggedSet(d["X"], d["arm"], d["propensity"], out, ("seg",))


def test_economics_and_measured_effects_by_hand() -> None:
    offers = OffersConfig()
    assert Economics.of("coupon_10pct", offers) == Economics(0.35, 0.10, 0.0, 0.02)
    assert Economics.of("free_shipping", offers) == Economics(0.35, 0.0, offers.shipping_cost, 0.02)
    assert Economics.of("an_arm_not_in_the_catalogue", offers) == Economics(0.35, 0.0, 0.0, 0.0)
    # Hajek means, weights 1/propensity: control (2·1 + 2·3)/(2+2) = 2; arm A (4·10 + 1·0)/(4+1) = 8
    data = LoggedSet(
        pd.DataFrame({"x": [0.0] * 4}),
        np.array(["none", "none", "A", "A"], dtype=object),
        np.array([0.5, 0.5, 0.25, 1.0]),
        pd.DataFrame({"margin": [1.0, 3.0, 10.0, 0.0]}),
    )
    assert measured_effects(data, "margin", "none", ["A"]) == {"A": pytest.approx(6.0)}


def test_margin_model_personalises_only_when_it_surely_pays(tmp_path) -> None:
    offers = OffersConfig()
    got = {}
    for scenario in ("personalise", "one_arm"):
        data = _margin_set(8000, 53, scenario)
        train, test = split_logged(data, 0.3, seed=0)
        fit = learn_offer_model(train, test, offers, learners=("t", "s"), seed=0)
        got[scenario] = fit
    pers, one = got["personalise"], got["one_arm"]
    # A helps half the customers and hurts the others: the spread is worth keeping, and the kept model
    # sends A to the helped half far more than to the hurt half
    assert pers.model.margin.shrink > 0, pers.shrink_values
    X = make_campaign(3000, seed=54)["X"]
    acts = personalised_actions(pers.model.margin, pers.model.margin.encoder.transform(X), "margin")
    helped = X["x1"].to_numpy() > 0.5
    assert (acts[helped] == "A").mean() > 0.8 > 0.3 > (acts[~helped] == "A").mean()
    # the same effect for everyone: the policy is (nearly) "A for everyone"
    acts1 = personalised_actions(one.model.margin, one.model.margin.encoder.transform(X), "margin")
    assert (acts1 == "A").mean() > 0.9
    # the saved model (LightGBM text + JSON) predicts the same
    back = OfferModel.load(pers.model.save(tmp_path / "m"), "2")
    M = pers.model.margin.encoder.transform(X.head(50))
    np.testing.assert_allclose(back.predict(M)["A"][1], pers.model.predict(M)["A"][1])
    assert back.margin.shrink == pers.model.margin.shrink
