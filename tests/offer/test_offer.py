"""The decision-log path: outcomes in the attribution window, the served offer model, the promotion gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rebuy.config import OffersConfig
from rebuy.errors import RebuyError
from tests.offer.synth import make_campaign
from training.offer import (
    Economics,
    LoggedSet,
    MarginModel,
    OfferModel,
    choose_margin_path,
    decision_outcomes,
    evaluate_uplift,
    fit_margin_model,
    hash_split,
    learn_and_evaluate,
    learn_offer_model,
    measured_effects,
    personalised_actions,
    promotion_decision,
    realised_margin,
    split_logged,
)
from training.uplift import UpliftModel, fit_uplift

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


def _basket_shift_set(n: int, seed: int) -> LoggedSet:
    """Arm A leaves conversion alone (30% in both arms) but triples the basket where x1 > 0.5 and cuts it to
    0.3x elsewhere: only a model of the realised margin can see whom A pays for."""
    rng = np.random.default_rng(seed)
    x1 = rng.random(n)
    arm = rng.choice(np.array(["none", "A"], dtype=object), n)
    conv = (rng.random(n) < 0.3).astype(float)
    mult = np.where(arm == "A", np.where(x1 > 0.5, 3.0, 0.3), 1.0)
    revenue = conv * np.exp(rng.normal(3.0, 0.3, n)) * mult
    out = pd.DataFrame({"conversion": conv, "margin": 0.35 * revenue, "revenue": revenue, "n_orders": conv})
    return LoggedSet(pd.DataFrame({"x1": x1, "x2": rng.normal(size=n)}), arm, np.full(n, 0.5), out)


def test_validation_keeps_the_realised_margin_path_when_offers_move_baskets(tmp_path) -> None:
    train, test = split_logged(_basket_shift_set(8000, 7), 0.25, seed=0)
    fit = learn_offer_model(train, test, OffersConfig(), learners=("t",), seed=0)
    paths = fit.paths.set_index("path")
    # conversion × economics sees no conversion effect, so at best "A for everyone"; the T-learner on margins
    # withholds A from the x1 <= 0.5 half, where it loses 0.35·0.3·e^3.045·0.7 ≈ 1.5 per customer
    assert fit.model.meta["margin_path"] == "realised_margin_t"
    assert paths.loc["realised_margin_t", "low"] > 0 and bool(paths.loc["realised_margin_t", "chosen"])
    assert paths.loc["conversion_economics", "value"] == 0.0  # the incumbent against itself
    assert isinstance(fit.model.margin, UpliftModel) and fit.model.meta["shrink"] is None
    X = pd.DataFrame({"x1": np.linspace(0.01, 0.99, 99), "x2": 0.0})
    acts = personalised_actions(fit.model.margin, fit.model.margin.encoder.transform(X), "margin")
    hi = X["x1"].to_numpy() > 0.5
    assert (acts[hi] == "A").mean() > 0.9 and (acts[~hi] == "A").mean() < 0.1
    # the kept model is what is saved and served
    back = OfferModel.load(fit.model.save(tmp_path / "m"), "1")
    M = fit.model.margin.encoder.transform(X)
    np.testing.assert_allclose(back.predict(M)["A"][1], fit.model.predict(M)["A"][1])
    assert back.meta["margin_path"] == "realised_margin_t"


def test_the_incumbent_path_stays_unless_the_other_surely_wins() -> None:
    # basket independent of the arm: conversion × economics is right, and the noisier T-learner on margins
    # must not replace it on a noisy validation win
    data = _margin_set(6000, 61, "one_arm")
    train, test = split_logged(data, 0.3, seed=0)
    fit = learn_offer_model(train, test, OffersConfig(), learners=("t",), seed=0)
    paths = fit.paths.set_index("path")
    assert fit.model.meta["margin_path"] == "conversion_economics"
    assert not paths.loc["realised_margin_t", "low"] > 0
    assert isinstance(fit.model.margin, MarginModel)
    only = learn_offer_model(
        train, test, OffersConfig(), learners=("t",), margin_paths=("conversion_economics",)
    )
    assert list(only.paths["path"]) == ["conversion_economics"] and set(only.candidates) == {
        "conversion_economics"
    }


def test_choose_margin_path_rules() -> None:
    data = _basket_shift_set(4000, 8)
    fit, valid = split_logged(data, 0.3, seed=0)
    t = fit_uplift(fit.X, fit.arm, fit.outcomes[["margin"]], "none")
    backwards = fit_uplift(
        fit.X, np.where(fit.arm == "A", "none", "A"), fit.outcomes[["margin"]], "none"
    )  # arms swapped: sends A exactly where it hurts
    name, table = choose_margin_path({"t": t, "backwards": backwards}, valid, "backwards", "point")
    assert name == "t" and table.set_index("path").loc["t", "value"] > 0
    # a candidate that is worse is never chosen, whichever the rule
    for rule in ("point", "lower_bound"):
        assert choose_margin_path({"t": t, "backwards": backwards}, valid, "t", rule)[0] == "t"
    with pytest.raises(RebuyError, match="path rule"):
        choose_margin_path({"t": t}, valid, "t", "best_of_three")
    with pytest.raises(RebuyError, match="incumbent"):
        choose_margin_path({"t": t}, valid, "backwards")


def test_modelled_margin_by_hand() -> None:
    # fewer than MIN_BASKET_ROWS converters: the basket "models" are the converters' mean revenue and orders
    rng = np.random.default_rng(0)
    n = 120
    arm = np.array(["none", "coupon_10pct", "free_shipping"] * 40, dtype=object)
    conv = (np.arange(n) % 4 == 0).astype(float)  # 30 converters
    revenue = conv * np.where(np.arange(n) % 8 == 0, 100.0, 60.0)  # 15 at 100, 15 at 60: mean 80
    n_orders = conv * np.where(np.arange(n) % 8 == 0, 1.0, 3.0)  # mean 2
    out = pd.DataFrame(
        {"conversion": conv, "margin": 0.35 * revenue, "revenue": revenue, "n_orders": n_orders}
    )
    data = LoggedSet(pd.DataFrame({"x": rng.random(n)}), arm, np.full(n, 1 / 3), out)
    offers = OffersConfig()
    conversion = fit_uplift(data.X, arm, out[["conversion"]], "none", min_rows=10)
    model = fit_margin_model(conversion, data, offers)
    assert model.revenue == pytest.approx(80.0) and model.orders == pytest.approx(2.0)
    M = conversion.encoder.transform(data.X.head(6))
    got = model.modelled_margin(
        M, np.array(["none", "coupon_10pct", "free_shipping"] * 2), [1, 1, 1, 0, 0, 0]
    )
    ship = offers.shipping_cost
    want = [0.35 * 80, 0.25 * 80 - 0.02, 0.35 * 80 - 2 * ship - 0.02, 0.0, -0.02, -0.02]
    np.testing.assert_allclose(got, want)
    with pytest.raises(RebuyError, match="economics"):
        model.modelled_margin(M[:1], np.array(["mystery"]), [1])


def _every_arm_hurts(n: int, seed: int, shift_a: float = 0.0) -> LoggedSet:
    """Uniform random arms none / A / B; A costs 0.02 of margin, B 0.20 (for everyone), noise sd 0.05.
    `shift_a` adds to A's logged outcomes: a training set from which A looks like it pays."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(np.array(["none", "A", "B"], dtype=object), n)
    X = pd.DataFrame({"x1": rng.random(n), "seg": rng.choice(["a", "b"], n)})
    y = 1.0 + np.where(arm == "A", -0.02 + shift_a, 0.0) + np.where(arm == "B", -0.20, 0.0)
    y = y + rng.normal(0, 0.05, n)
    out = pd.DataFrame({"conversion": (y > 1.0).astype(float), "margin": y})
    return LoggedSet(X, arm, np.full(n, 1 / 3), out, ("seg",))


def test_promotion_needs_the_candidate_to_beat_sending_nothing() -> None:
    # a candidate that learned A pays (its training rows were shifted) sends A to everyone; on honest held-out
    # rows A for everyone beats the random logging policy (which sends B a third of the time: by hand
    # -0.02 - (0 - 0.02 - 0.20) / 3 = +0.053) but loses 0.02 per decision against sending nothing
    train = _every_arm_hurts(3000, seed=1, shift_a=0.10)
    test = _every_arm_hurts(3000, seed=2)
    model = fit_uplift(train.X, train.arm, train.outcomes[["margin"]], "none", categorical=("seg",))
    ev = evaluate_uplift(model, test, "none", "margin", current="logged", train=train)
    M = model.encoder.transform(test.X)
    assert (personalised_actions(model, M, "margin") == "A").mean() > 0.95
    assert ev.vs_current is not None and ev.vs_current.low > 0  # the old gate would have promoted it
    assert abs(ev.vs_current.value - 0.053) < 0.01
    assert ev.vs_nothing is not None and ev.vs_nothing.high < 0
    assert abs(ev.vs_nothing.value + 0.02) < 0.006
    ok, reason = promotion_decision(ev)
    assert not ok and "does not surely beat sending nothing" in reason
    assert ev.to_json()["personalised_minus_nothing"]["value"] == pytest.approx(ev.vs_nothing.value)


def test_promotion_when_the_candidate_beats_both(logged) -> None:
    # make_campaign's arms pay for some customers: the learned policy beats both random and nobody
    data, _ = logged
    train, test = split_logged(data, 0.4, seed=0)
    ev = learn_and_evaluate(train, test, "none", "margin", current="logged")
    ok, reason = promotion_decision(ev)
    assert ev.vs_nothing is not None
    assert ok == (ev.vs_current.low > 0 and ev.vs_nothing.low > 0)
    assert ok and reason.startswith("promote:"), reason
