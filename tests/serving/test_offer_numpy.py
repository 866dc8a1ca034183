"""serving.offer_numpy gives exactly OfferModel.predict's numbers (the service scores offers through it)."""

from __future__ import annotations

from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.offer_numpy import NumpyOffer, numpy_offer
from tests.support.synthetic import synthetic_scorer
from training.offer import Economics, MarginModel, OfferModel
from training.offer_data import FEATURE_SERVICE
from training.uplift import fit_uplift

ARMS = ("none", "coupon_10pct", "free_shipping")


def _offer_model(center: bool, booster_basket: bool) -> tuple[OfferModel, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 900
    X = pd.DataFrame({"x1": rng.random(n), "x2": rng.normal(size=n)})
    X.loc[rng.random(n) < 0.1, "x2"] = np.nan
    arm = np.array(ARMS * (n // 3), dtype=object)
    p = 0.2 + 0.2 * X["x1"].to_numpy() * (arm == "coupon_10pct") + 0.05 * (arm == "free_shipping")
    y = (rng.random(n) < p).astype(float)
    conversion = fit_uplift(X, arm, pd.DataFrame({"conversion": y}), "none", min_rows=10)
    revenue: object = 60.0
    if booster_basket:
        params = {"objective": "regression", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 20}
        revenue = lgb.train(params, lgb.Dataset(X.to_numpy(), 50 + 20 * X["x1"].to_numpy()), 10)
    economics = {
        "none": Economics(0.35, 0.0, 0.0, 0.0),
        "coupon_10pct": Economics(0.35, 0.1, 0.0, 0.02),
        "free_shipping": Economics(0.35, 0.0, 4.0, 0.0),
    }
    margin = MarginModel(
        conversion,
        revenue,
        2.0,
        economics,
        shrink=0.5 if center else 1.0,
        center={"coupon_10pct": 1.25, "free_shipping": -0.4} if center else {},
        model_mean={"coupon_10pct": 0.9} if center else {},
    )
    M = conversion.encoder.transform(X.head(40))
    return OfferModel(conversion, margin, version="7"), M


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("booster_basket", [False, True])
def test_numpy_offer_equals_offer_model_exactly(center: bool, booster_basket: bool) -> None:
    model, M = _offer_model(center, booster_basket)
    fast = numpy_offer(model)
    assert isinstance(fast, NumpyOffer)
    assert (fast.version, fast.feature_service, list(fast.feature_names)) == (
        "7",
        FEATURE_SERVICE,
        ["x1", "x2"],
    )
    assert fast.offers == model.offers  # everything else is the model's own
    want, got = model.predict(M), fast.predict(M)
    assert list(got) == list(want)
    for arm in want:
        np.testing.assert_array_equal(got[arm][0], want[arm][0])
        np.testing.assert_array_equal(got[arm][1], want[arm][1])
    one = M[3:4]  # the service's case: one customer
    np.testing.assert_array_equal(fast.predict(one)["coupon_10pct"][1], model.predict(one)["coupon_10pct"][1])


def test_other_offer_models_are_left_as_they_are() -> None:
    scorer, _ = synthetic_scorer(n_customers=300, rounds=5)
    assert numpy_offer(scorer.offer_model) is scorer.offer_model
    model, _ = _offer_model(False, False)
    plain = OfferModel(model.conversion, model.conversion)  # an UpliftModel margin part: already numpy
    assert numpy_offer(plain) is plain


def test_shared_t_learner_levels_are_predicted_once_and_give_the_same_numbers() -> None:
    """The pipeline's champions: one T-learner behind both parts; each arm's booster is asked once per call."""
    model, M = _offer_model(True, True)
    fast = numpy_offer(model)
    assert fast._plan is not None  # the shared-levels path is the one under test
    calls: list[int] = []

    class Counting:
        def __init__(self, b: lgb.Booster) -> None:
            self.b = b

        def predict(self, X: np.ndarray, **kw: object) -> np.ndarray:
            calls.append(len(X))
            return self.b.predict(X, **kw)

    counted = {k: Counting(b) for k, b in model.conversion.boosters.items()}
    conv = replace(model.conversion, boosters=counted)
    shared = OfferModel(conv, replace(model.margin, conversion=conv), version="7")
    got = numpy_offer(shared).predict(M)
    assert len(calls) == len(ARMS)  # control + 2 arms, once each (the model itself asks 2x per arm)
    want = model.predict(M)
    for arm in want:
        np.testing.assert_array_equal(got[arm][0], want[arm][0])
        np.testing.assert_array_equal(got[arm][1], want[arm][1])


def test_parts_that_do_not_share_a_t_learner_take_the_general_path() -> None:
    """An X-learner, or two separate copies of the learner: no shared plan, still OfferModel's numbers."""
    model, M = _offer_model(True, False)
    rng = np.random.default_rng(9)
    n = 600
    X = pd.DataFrame({"x1": rng.random(n), "x2": rng.normal(size=n)})
    arm = np.array(ARMS * (n // 3), dtype=object)
    y = (rng.random(n) < 0.3 + 0.2 * X["x1"].to_numpy() * (arm != "none")).astype(float)
    x_learner = fit_uplift(X, arm, pd.DataFrame({"conversion": y}), "none", learner="x", min_rows=10)
    separate = {k: lgb.Booster(model_str=b.model_to_string()) for k, b in model.conversion.boosters.items()}
    for other in (
        OfferModel(x_learner, replace(model.margin, conversion=x_learner), version="7"),
        OfferModel(replace(model.conversion, boosters=separate), model.margin, version="7"),
    ):
        fast = numpy_offer(other)
        assert fast._plan is None
        want, got = other.predict(M), fast.predict(M)
        for a in want:
            np.testing.assert_array_equal(got[a][0], want[a][0])
            np.testing.assert_array_equal(got[a][1], want[a][1])
