"""Metrics, calibration and segments on values worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from rebuy.config import SegmentsConfig
from rebuy.errors import RebuyError
from training.calibration import apply_calibrator, fit_calibrator, select_calibrator
from training.metrics import bootstrap_auc_diff, expected_calibration_error, lift_at, roc_auc
from training.segments import segment, value_cut, value_cut_from_meta


def test_ece_by_hand():
    # two equal-frequency bins of 2: bin1 p=(0.1,0.3) mean 0.2, y=(0,0) -> |0-0.2|; bin2 p=(0.6,0.8) mean 0.7,
    # y=(1,1) -> |1-0.7| = 0.3. ECE = (2*0.2 + 2*0.3)/4 = 0.25
    assert expected_calibration_error(
        np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.8]), bins=2
    ) == pytest.approx(0.25)


def test_lift_by_hand():
    # 10 rows, 2 positives (rate 0.2); top 10% = 1 row, the highest score, a positive -> lift 1/0.2 = 5
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    assert lift_at(y, s, 0.1) == pytest.approx(5.0)


def test_auc_and_paired_bootstrap():
    # y=(0,0,1,1), scores a perfect (AUC 1), b reversed on one pair: pairs (neg,pos) 4, b wins 3 -> 0.75
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(y, np.array([0.1, 0.35, 0.3, 0.4])) == 0.75
    rng = np.random.default_rng(1)
    yy = rng.integers(0, 2, 2000)
    good = yy + rng.normal(0, 0.7, 2000)
    bad = yy + rng.normal(0, 2.0, 2000)
    ci = bootstrap_auc_diff(yy, good, bad, n=200)
    assert ci["ci_low"] > 0 and ci["ci_low"] <= ci["diff"] <= ci["ci_high"]
    same = bootstrap_auc_diff(yy, good, good, n=50)
    assert same["diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0


def test_isotonic_calibrator_is_json_and_matches_sklearn():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 3000)
    y = (rng.uniform(0, 1, 3000) < p**2).astype(float)  # true probability p², so raw p overstates
    cal = json.loads(json.dumps(fit_calibrator(p, y)))
    assert cal["method"] == "isotonic"
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    grid = np.linspace(-0.1, 1.1, 57)
    # sklearn's isotonic prediction, up to the tie-break slope (at most 1e-6)
    np.testing.assert_allclose(apply_calibrator(cal, grid), iso.predict(grid), rtol=0, atol=1e-6 + 1e-12)
    assert not np.allclose(apply_calibrator(cal, grid), iso.predict(grid), rtol=0, atol=1e-12)
    assert expected_calibration_error(y, apply_calibrator(cal, p)) < expected_calibration_error(y, p)


def test_platt_recovers_a_known_sigmoid():
    # raw logit z; true probability sigmoid(2 z - 1): Platt must find a ≈ 2, b ≈ -1
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, 20000)
    p = 1 / (1 + np.exp(-z))
    y = (rng.uniform(0, 1, len(z)) < 1 / (1 + np.exp(-(2 * z - 1)))).astype(float)
    cal = fit_calibrator(p, y, method="platt")
    assert cal["a"] == pytest.approx(2.0, abs=0.1) and cal["b"] == pytest.approx(-1.0, abs=0.1)
    assert apply_calibrator(cal, np.array([0.5]))[0] == pytest.approx(1 / (1 + np.exp(1.0)), abs=0.03)


def test_segments_by_hand():
    cfg = SegmentsConfig(high_value_quantile=0.8, dormant_churn=0.7, potential_churn=0.4)
    assert value_cut(np.arange(1, 11, dtype=float), cfg) == pytest.approx(8.2)  # numpy linear quantile
    churn = np.array([0.1, 0.1, 0.5, 0.75, 0.39])
    value = np.array([100.0, 5.0, 100.0, 100.0, 50.0])
    # high value & low churn; low value; high value but at risk; dormant regardless of value; 50 == cut
    assert segment(churn, value, 50.0, cfg).tolist() == [
        "high_value",
        "potential",
        "potential",
        "dormant",
        "high_value",
    ]


def test_value_cut_from_stored_quantiles_interpolates():
    # quantiles 0, 0.05, …, 1 of predictions 0..100 -> q = 0.8 lies on the grid (80), 0.825 between 80 and 85
    meta = {"prediction_quantiles": np.linspace(0, 100, 21).tolist()}
    assert value_cut_from_meta(meta, SegmentsConfig(high_value_quantile=0.8)) == pytest.approx(80.0)
    assert value_cut_from_meta(meta, SegmentsConfig(high_value_quantile=0.825)) == pytest.approx(82.5)


def test_stored_value_cut_wins_and_a_model_without_either_is_refused():
    # the cut written at training time stays, even if the configured quantile changed since
    meta = {"value_cut": 42.0, "prediction_quantiles": np.linspace(0, 100, 21).tolist()}
    assert value_cut_from_meta(meta, SegmentsConfig(high_value_quantile=0.5)) == 42.0
    with pytest.raises(RebuyError, match="retrain"):
        value_cut_from_meta({"feature_names": ["x"]}, SegmentsConfig())


def test_isotonic_keeps_the_booster_ranking_inside_its_flat_steps():
    # y = 0, 1, 0, 1 on raw scores 0.1 .. 0.4: isotonic pools the middle two to 0.5 (a flat step)
    cal = fit_calibrator(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]), method="isotonic")
    out = apply_calibrator(cal, np.array([0.2, 0.25, 0.3]))
    assert np.all(np.diff(out) > 0)  # still in the raw order, no ties
    np.testing.assert_allclose(out, [0.5, 0.5, 0.5], atol=1e-6)  # and still the calibrated probability
    # a calibrator stored without the tie-break (older models) applies exactly as fitted
    old = {k: v for k, v in cal.items() if k != "tie_break"}
    assert apply_calibrator(old, np.array([0.2, 0.3])).tolist() == [0.5, 0.5]


def test_select_calibrator_prefers_isotonic_on_a_shape_platt_cannot_follow():
    # true probability: a step (0.2 below raw 0.5, 0.8 above): no sigmoid of logit(p) follows a jump,
    # isotonic does; two folds of 5,000 rows each, so the cross-fitted log loss must pick isotonic
    rng = np.random.default_rng(4)
    folds = []
    for _ in range(2):
        p = rng.uniform(0, 1, 5000)
        y = (rng.uniform(0, 1, 5000) < np.where(p < 0.5, 0.2, 0.8)).astype(float)
        folds.append((p, y))
    cal = json.loads(json.dumps(select_calibrator(folds)))
    assert cal["method"] == "isotonic"
    scores = cal["selection"]["cross_fitted_log_loss"]
    assert scores["isotonic"] < scores["platt"]
    assert cal["selection"]["rows"] == 10_000  # refitted on both folds
    out = apply_calibrator(cal, np.array([0.25, 0.75]))
    np.testing.assert_allclose(out, [0.2, 0.8], atol=0.03)


def test_select_calibrator_prefers_platt_when_the_truth_is_a_sigmoid():
    # true probability sigmoid(2·logit(p) − 1): Platt's own family, so its two parameters beat isotonic's steps
    rng = np.random.default_rng(5)
    folds = []
    for _ in range(2):
        z = rng.normal(0, 1.5, 1500)
        p = 1 / (1 + np.exp(-z))
        y = (rng.uniform(0, 1, len(z)) < 1 / (1 + np.exp(-(2 * z - 1)))).astype(float)
        folds.append((p, y))
    cal = select_calibrator(folds)
    assert cal["method"] == "platt"
    assert cal["a"] == pytest.approx(2.0, abs=0.25) and cal["b"] == pytest.approx(-1.0, abs=0.25)


def test_select_calibrator_on_small_folds_and_bad_input():
    # 2 x 300 rows: isotonic would be fitted on 300 rows (< 1000), so only Platt is scored
    rng = np.random.default_rng(6)
    p = rng.uniform(0.05, 0.95, 600)
    y = (rng.uniform(0, 1, 600) < p).astype(float)
    cal = select_calibrator([(p[:300], y[:300]), (p[300:], y[300:])])
    assert cal["method"] == "platt" and list(cal["selection"]["cross_fitted_log_loss"]) == ["platt"]
    # one fold: no cross-fitting possible, the plain rule by row count (600 < 1000 -> Platt)
    assert select_calibrator([(p, y)])["method"] == "platt"
    with pytest.raises(RebuyError, match="non-empty fold"):
        select_calibrator([(np.array([]), np.array([]))])
