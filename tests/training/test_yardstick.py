"""The observable and trait ceilings on cases with a known answer, and the one quality table's order and ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import small_cfg

from rebuy.config import Config
from rebuy.errors import DataError
from training.metrics import roc_auc
from training.pipeline import order_quality, quality_ratios, train
from training.specs import get_spec
from training.yardstick import (
    OBSERVABLE,
    SCORERS,
    TRAIT,
    Yardstick,
    ceiling_kinds,
    ceiling_params,
    fit_ceiling,
)


def _truth(X: np.ndarray) -> np.ndarray:
    # an exact, non-linear function of the features (an interaction and a threshold)
    z = 1.5 * X[:, 0] - X[:, 1] + 0.8 * X[:, 0] * X[:, 2] + (X[:, 3] > 0.5)
    return 1 / (1 + np.exp(-z))


def test_ceiling_equals_the_oracle_when_the_truth_is_a_function_of_the_features():
    rng = np.random.default_rng(0)
    spec = get_spec(Config(), "churn")
    # two independent "shops" to learn from, a third to score on
    X_fit = rng.normal(size=(30_000, 4))
    X_test = rng.normal(size=(20_000, 4))
    p_test = _truth(X_test)
    y_test = (rng.random(len(X_test)) < p_test).astype(float)
    c = fit_ceiling(spec, X_fit, _truth(X_fit), ["a", "b", "c", "d"], seed=1)
    oracle_auc = roc_auc(y_test, p_test)
    ceiling_auc = roc_auc(y_test, c.predict(X_test))
    assert abs(ceiling_auc - oracle_auc) < 0.005, (ceiling_auc, oracle_auc)
    # it learned the truth, not the noisy labels: probabilities close to the true ones
    assert np.abs(c.predict(X_test) - p_test).mean() < 0.02


def test_ceiling_of_an_expectation_recovers_it():
    rng = np.random.default_rng(1)
    spec = get_spec(Config(), "value")
    X = rng.normal(size=(30_000, 3))
    mean = (1 + X[:, 0] ** 2) * (X[:, 1] > 0)
    c = fit_ceiling(spec, X, mean, ["a", "b", "c"], seed=1)
    X_test = rng.normal(size=(5_000, 3))
    truth = (1 + X_test[:, 0] ** 2) * (X_test[:, 1] > 0)
    assert np.corrcoef(c.predict(X_test), truth)[0, 1] > 0.99


def test_ceiling_params_are_at_the_large_end_of_the_search_space():
    spec = get_spec(Config(), "churn")
    p = ceiling_params(spec, 7)
    space = spec.search_space
    assert (
        p["num_leaves"] == space["num_leaves"].high and p["min_data_in_leaf"] == space["min_data_in_leaf"].low
    )
    assert p["lambda_l2"] == space["lambda_l2"].low and p["feature_fraction"] == 1.0
    assert p["objective"] == "cross_entropy" and p["num_threads"] == 1 and p["deterministic"]
    assert ceiling_params(get_spec(Config(), "value"), 7)["objective"] == "regression"


def test_bad_truth_is_refused():
    spec = get_spec(Config(), "churn")
    X = np.zeros((100, 1))
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        fit_ceiling(spec, X, np.full(100, 1.5), ["a"])
    with pytest.raises(DataError, match="missing"):
        fit_ceiling(spec, X, np.full(100, np.nan), ["a"])


def test_trait_ceiling_sees_what_the_features_miss():
    # the truth depends on a hidden trait; the observable ceiling cannot see it, the trait ceiling can
    rng = np.random.default_rng(2)
    spec = get_spec(Config(), "repurchase")
    n = 30_000
    x = rng.normal(size=n)
    trait = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(x + 2 * trait)))
    hidden_cols = ceiling_kinds(["x"])[TRAIT][1:]
    hid = pd.DataFrame(rng.normal(size=(n, len(hidden_cols))), columns=hidden_cols)
    hid["conversion"] = trait
    obs = fit_ceiling(spec, x[:, None], p, ["x"], seed=1, kind=OBSERVABLE)
    full = np.column_stack([x, hid[hidden_cols].to_numpy()])
    tr = fit_ceiling(spec, full, p, ["x", *hidden_cols], seed=1, kind=TRAIT)
    keys = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(n)], "cutoff": pd.Timestamp("2025-01-01", tz="UTC")}
    )
    ys = Yardstick({"repurchase": {OBSERVABLE: obs, TRAIT: tr}}, {"repurchase": ["x"]})
    assert set(ys.predict(spec, keys, x[:, None])) == {OBSERVABLE}  # no hidden columns for this shop: skipped
    preds = ys.for_shop(lambda k: hid.iloc[: len(k)]).predict(spec, keys, x[:, None])
    y = (rng.random(n) < p).astype(float)
    assert roc_auc(y, preds[TRAIT]) > roc_auc(y, preds[OBSERVABLE]) + 0.05


def test_quality_table_order_and_ratios():
    spec = get_spec(Config(), "churn")
    q = {
        "oracle": {"roc_auc": 0.9},
        "ceiling_plus_state": {"roc_auc": 0.86},
        TRAIT: {"roc_auc": 0.88},
        "model": {"roc_auc": 0.8},
        f"{OBSERVABLE}_1x": {"roc_auc": 0.838},
        OBSERVABLE: {"roc_auc": 0.84},
        "recency": {"roc_auc": 0.7},
    }
    ordered = order_quality(q)
    assert list(ordered)[:5] == ["model", "recency", OBSERVABLE, TRAIT, "oracle"]
    assert list(ordered)[5:] == sorted(["ceiling_plus_state", f"{OBSERVABLE}_1x"])
    assert [s for s in SCORERS if s in q] == list(ordered)[:5]
    r = quality_ratios(spec, ordered)
    assert r["auc_ratio_to_ceiling"] == pytest.approx(0.8 / 0.84)
    assert r["auc_ratio_to_oracle"] == pytest.approx(0.8 / 0.9)
    assert r[f"{OBSERVABLE}_share_of_oracle"] == pytest.approx(0.84 / 0.9)
    assert r["ceiling_convergence_auc_delta"] == pytest.approx(0.002)


def test_the_pipeline_scores_ceilings_on_its_test_rows(synth_shop, tmp_path):
    from synth import FEATURES

    df, oracles, _ = synth_shop
    cfg = small_cfg(tmp_path, trials=2)
    spec = get_spec(cfg, "churn")
    seen: dict[str, object] = {}
    truth = oracles["churn"].set_index(["customer_id", "cutoff"])["oracle"]

    def ceilings(s, keys, X):  # type: ignore[no-untyped-def]
        seen.update(spec=s.name, rows=len(keys), cols=X.shape[1])
        # a "ceiling" that knows the truth exactly scores like the oracle
        exact = truth.loc[pd.MultiIndex.from_frame(keys)].to_numpy()
        return {OBSERVABLE: exact}

    res = train(
        cfg, spec, df, oracles["churn"], feature_names=FEATURES, show_progress=False, ceilings=ceilings
    )
    assert seen == {"spec": "churn", "rows": len(res.test_y), "cols": len(FEATURES)}
    assert list(res.quality)[:4] == ["model", "recency", "bgnbd", OBSERVABLE]
    assert list(res.quality)[-1] == "oracle"
    assert res.quality[OBSERVABLE]["roc_auc"] == pytest.approx(res.quality["oracle"]["roc_auc"])
    assert res.metrics[f"{OBSERVABLE}_share_of_oracle"] == pytest.approx(1.0)
    assert res.metrics["auc_ratio_to_ceiling"] == pytest.approx(
        res.metrics["roc_auc"] / res.quality[OBSERVABLE]["roc_auc"]
    )
