"""The one-row fast path (serving.fastpredict) predicts exactly what `Booster.predict` does.

Served scores must stay bit-identical to the batch and offline paths, so every check here is exact
equality (`assert_array_equal`), on binary and regression boosters, rows with missing values, every
prediction type the models use, model bundles with calibrators, and the uplift learners of the offer model.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.fastpredict import FastBooster, accelerate
from tests.support.synthetic import synthetic_scorer
from training.calibration import fit_calibrator
from training.registry import ModelBundle
from training.uplift import fit_uplift


def _rows(n: int, f: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[rng.uniform(size=X.shape) < 0.15] = np.nan  # missing values take LightGBM's default branches
    return X


def _booster(objective: str, seed: int = 0) -> tuple[lgb.Booster, np.ndarray]:
    X = _rows(400, 5, seed)
    z = np.nan_to_num(X[:, 0]) - 0.5 * np.nan_to_num(X[:, 2])
    y = (z + np.random.default_rng(seed).normal(size=400) > 0).astype(float) if objective == "binary" else z
    if objective == "poisson":  # counts: a non-identity output transform (exp of the raw score)
        y = np.random.default_rng(seed).poisson(np.exp(0.5 * z))
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=25), _rows(60, 5, seed + 100)


@pytest.mark.parametrize("objective", ["binary", "regression", "poisson"])
@pytest.mark.parametrize("kind", [{}, {"raw_score": True}, {"pred_contrib": True}])
def test_one_row_equals_booster_predict_exactly(objective: str, kind: dict[str, bool]) -> None:
    booster, X = _booster(objective)
    fast = FastBooster(booster)
    for i in range(len(X)):
        row = X[i : i + 1]
        want = booster.predict(row, num_threads=1, **kind)
        got = fast.predict(row, num_threads=1, **kind)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # a batch (and anything else) goes to the booster itself
    np.testing.assert_array_equal(
        fast.predict(X, num_threads=1, **kind), booster.predict(X, num_threads=1, **kind)
    )


def test_fast_path_is_taken_for_one_row_and_not_for_batches() -> None:
    booster, X = _booster("binary")
    fast = FastBooster(booster)
    calls: list[int] = []
    real = fast.predict_row
    fast.predict_row = lambda row, kind=0: calls.append(kind) or real(row, kind)  # type: ignore[method-assign]
    fast.predict(X[:1], num_threads=1)
    fast.predict(X[:1], pred_contrib=True, num_threads=1)
    fast.predict(X[:3], num_threads=1)
    fast.predict(X[:1], num_iteration=5)  # a different iteration range is not what the config was built for
    assert calls == [0, 3]


def test_concurrent_one_row_calls_stay_correct() -> None:
    booster, X = _booster("binary")
    fast = FastBooster(booster)
    want = booster.predict(X, pred_contrib=True, num_threads=1)
    errors: list[int] = []

    def run() -> None:
        for _ in range(20):
            for i in range(len(X)):
                if not np.array_equal(fast.predict(X[i : i + 1], pred_contrib=True)[0], want[i]):
                    errors.append(i)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_accelerate_bundle_with_isotonic_calibrator_is_exact() -> None:
    booster, X = _booster("binary", seed=1)
    y = (np.nan_to_num(X[:, 0]) > 0).astype(float)
    cal = fit_calibrator(booster.predict(X, num_threads=1), y, method="isotonic")
    bundle = ModelBundle(
        "rebuy-churn", "4", booster, cal, [f"f{i}" for i in range(5)], "churn_v1", "binary", {}
    )
    fast = accelerate(bundle)
    assert isinstance(fast.booster, FastBooster) and isinstance(fast.calibrator["x"], np.ndarray)
    assert bundle.booster is booster and isinstance(bundle.calibrator["x"], list)  # the original is untouched
    assert accelerate(fast).booster is fast.booster  # idempotent
    for i in range(len(X)):
        np.testing.assert_array_equal(fast.predict(X[i : i + 1]), bundle.predict(X[i : i + 1]))
        np.testing.assert_array_equal(fast.contributions(X[i : i + 1]), bundle.contributions(X[i : i + 1]))


def test_accelerate_uplift_learners_of_the_offer_model_is_exact() -> None:
    rng = np.random.default_rng(4)
    n = 900
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(size=n)})
    arm = rng.choice(["none", "coupon_10pct", "free_shipping"], size=n)
    lift = np.where(arm == "coupon_10pct", 0.2 * frame["a"], 0.0)
    outcomes = pd.DataFrame(
        {
            "converted": (rng.uniform(size=n) < 0.3 + lift.clip(-0.2, 0.2)).astype(float),
            "margin": 10 * lift + rng.normal(size=n),
        }
    )
    for learner in ("t", "x"):
        model = fit_uplift(frame, arm, outcomes, "none", learner=learner, params={"num_leaves": 4})
        fast = accelerate(model)
        assert all(isinstance(b, FastBooster) for b in fast.boosters.values())
        X = model.encoder.transform(frame.head(40))
        for i in range(len(X)):
            want, got = model.predict(X[i : i + 1]), fast.predict(X[i : i + 1])
            assert want.keys() == got.keys()
            for a in want:
                for w, g in zip(want[a], got[a], strict=True):
                    np.testing.assert_array_equal(g, w)


def test_scorer_one_customer_equals_the_batch_path() -> None:
    """The service's one-customer requests (fast path) and `rebuy score` batches (Booster.predict) agree."""
    scorer, _ = synthetic_scorer(n_customers=300, seed=9, rounds=20)
    ids = [f"c{i:06d}" for i in range(0, 300, 7)] + ["nobody"]
    now = pd.Timestamp("2025-07-01T00:00:00Z")
    batch = scorer.score_ids(ids, now)
    for i, cid in enumerate(ids):
        one = scorer.score_ids([cid], now)
        for col in ("churn", "repurchase", "days_to_next", "value", "margin", "conversion"):
            np.testing.assert_array_equal(getattr(one, col)[0], getattr(batch, col)[i])
        assert one.reasons[0] == batch.reasons[i]
    # and replacing models keeps them fast (dataclasses.replace re-runs the scorer's set-up)
    other = replace(scorer, reasons_k=1)
    assert isinstance(other.models["churn"].booster, FastBooster)
