"""Recent and age-matched reference, weekday-matched sampling, label maturity, performance and input errors on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.drift import (
    Roles,
    age_matched,
    aged_tenure,
    auc_se,
    check_frames,
    mature_labels,
    performance,
    performance_vs_champion,
    recent_reference,
    sample_matched,
)
from rebuy.config import DriftConfig
from rebuy.errors import DataError


def _at(days: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(days, utc=True))


def test_recent_reference_keeps_the_latest_cutoffs_that_reach_min_rows() -> None:
    ref = pd.DataFrame({"at": _at(["2025-01-01"] * 5 + ["2025-02-01"] * 3 + ["2025-03-01"] * 2)})
    kept, note = recent_reference(ref, "at", min_rows=4)
    # March has 2 rows, March + February 5 >= 4: January is left out
    assert sorted(kept["at"].dt.strftime("%m").unique()) == ["02", "03"] and len(kept) == 5
    assert "2 most recent cutoff(s)" in note
    kept, _ = recent_reference(ref, "at", min_rows=100)
    assert len(kept) == len(ref)  # not enough anywhere: everything


def test_age_matching_draws_the_reference_to_the_current_tenure_mix() -> None:
    rng = np.random.default_rng(0)
    # reference: a young shop (tenure 0-300); current: the same shop 200 days older (tenure 0-500)
    ref = pd.DataFrame({"tenure": rng.uniform(0, 300, 6000), "x": 0.0})
    ref["x"] = ref["tenure"] / 100 + rng.normal(0, 0.1, len(ref))  # an age-driven feature
    cur = pd.DataFrame({"tenure": rng.uniform(0, 500, 3000)})
    cur["x"] = cur["tenure"] / 100 + rng.normal(0, 0.1, len(cur))
    matched, note = age_matched(ref, cur, "tenure", seed=1, bands=10, min_band_rows=30)
    assert "age-matched" in note
    # the current deciles above 300 days have no reference rows: they merge into the oldest band the
    # reference has, so the matched reference is older than the raw one, and its young bands keep the
    # current shares (10% of the current rows are younger than 50 days)
    assert matched["tenure"].mean() > ref["tenure"].mean() + 40
    assert abs((matched["tenure"] < 50).mean() - (cur["tenure"] < 50).mean()) < 0.02
    assert matched.index.is_unique and len(matched) <= len(ref)


def test_aged_tenure_adds_the_gap_and_newcomers_at_the_reference_rate() -> None:
    cut = pd.Timestamp("2025-01-01", tz="UTC")
    ref = pd.DataFrame({"tenure": [5.0, 20.0, 100.0], "at": [cut] * 3})
    aged = aged_tenure(ref, "tenure", "at", cut + pd.Timedelta(days=30))
    # everyone is 30 days older; the two who joined in the 30 days before the cutoff stand for the
    # customers who joined in the 30 days since
    assert sorted(aged.tolist()) == [5.0, 20.0, 35.0, 50.0, 130.0]


def test_auc_standard_error_by_hand() -> None:
    # Hanley-McNeil at AUC 0.8 with 50 positives and 50 negatives: q1 = 0.8/1.2, q2 = 1.28/1.8
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    var = (0.8 * 0.2 + 49 * (q1 - 0.64) + 49 * (q2 - 0.64)) / 2500
    assert auc_se(0.8, 50, 50) == pytest.approx(np.sqrt(var))


def _binary_rows(n: int, auc_noise: float, bias: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.6, n)
    y = (rng.random(n) < p).astype(float)
    score = np.clip(p + rng.normal(0, auc_noise, n), 0.001, 0.999) * bias
    return pd.DataFrame({"y": y, "p": score})


def test_performance_against_the_champion_is_drift_only_beyond_the_interval() -> None:
    roles = Roles(features=("x",), target="y", prediction="p", task="binary")
    cfg = DriftConfig(min_labelled_rows=100)
    good = _binary_rows(3000, 0.0, 1.0, 1)
    test_auc = float(performance_vs_champion(good, roles, {"roc_auc": 0.5, "test_rows": 0}, cfg)[0]["auc"])
    champion = {"roc_auc": test_auc, "positive_rate": 0.33, "test_rows": 3000}
    # the same model on fresh rows: ok, and the interval covers the test AUC
    m, level, _ = performance_vs_champion(_binary_rows(3000, 0.0, 1.0, 2), roles, champion, cfg)
    assert level == "ok" and m["auc_diff_lo"] < 0 < m["auc_diff_hi"]
    # a model whose ranking broke (noise as large as the signal): the whole interval is below zero
    m, level, _ = performance_vs_champion(_binary_rows(3000, 0.3, 1.0, 3), roles, champion, cfg)
    assert level == "drift" and m["auc_diff_hi"] < 0
    # the same ranking, every probability halved: AUC ok, calibration drift
    m, level, _ = performance_vs_champion(_binary_rows(3000, 0.0, 0.5, 4), roles, champion, cfg)
    assert (
        level == "drift"
        and m["auc_diff_lo"] < 0 < m["auc_diff_hi"]
        and m["mean_prediction"] < m["observed_lo"]
    )
    # too few matured rows: not measured, and the note says so
    m, level, note = performance_vs_champion(_binary_rows(50, 0.0, 1.0, 5), roles, champion, cfg)
    assert m == {} and level == "ok" and "not yet measurable" in note


def test_performance_against_the_champion_regression_mae() -> None:
    roles = Roles(features=("x",), target="y", prediction="p", task="regression")
    cfg = DriftConfig(min_labelled_rows=100)
    rng = np.random.default_rng(3)
    y = rng.normal(50, 10, 2000)
    ok = pd.DataFrame({"y": y, "p": y + rng.normal(0, 5, len(y))})  # MAE ≈ 5·sqrt(2/π) ≈ 3.99
    champion = {"mae": 4.0, "test_rows": 2000}
    assert performance_vs_champion(ok, roles, champion, cfg)[1] == "ok"
    worse = pd.DataFrame({"y": y, "p": y + rng.normal(0, 6, len(y))})  # MAE ≈ 4.79
    m, level, _ = performance_vs_champion(worse, roles, champion, cfg)
    assert level == "drift" and m["mae_diff_lo"] > 0


def test_sample_matched_gives_both_sides_the_reference_weekday_mix() -> None:
    mon, tue, wed = "2025-03-03", "2025-03-04", "2025-03-05"
    # reference: 600 Mondays, 400 Tuesdays; current: 100 Mondays, 500 Tuesdays, 300 Wednesdays
    ref = pd.DataFrame({"at": _at([mon] * 600 + [tue] * 400), "x": 1.0})
    cur = pd.DataFrame({"at": _at([mon] * 100 + [tue] * 500 + [wed] * 300), "x": 1.0})
    r, c, note = sample_matched(ref, cur, "at", n_ref=500, n_cur=500, seed=1)
    # the reference mix is 60/40; current has only 100 Mondays, so at most 100/0.6 = 166 rows keep that mix
    assert r["at"].dt.dayofweek.value_counts().to_dict() == {0: 300, 1: 200}
    assert c["at"].dt.dayofweek.value_counts().to_dict() == {0: 100, 1: 66}
    assert "300 current rows on weekdays the reference lacks" in note


def test_sample_matched_without_shared_weekdays_samples_plainly_and_says_so() -> None:
    ref = pd.DataFrame({"at": _at(["2025-03-03"] * 50)})
    cur = pd.DataFrame({"at": _at(["2025-03-04"] * 80)})
    r, c, note = sample_matched(ref, cur, "at", n_ref=30, n_cur=30, seed=1)
    assert len(r) == 30 and len(c) == 30 and "share no weekday" in note


def test_labels_count_only_once_their_horizon_has_passed() -> None:
    roles = Roles(features=("x",), target="y", timestamp="at", horizon_days=30)
    cur = pd.DataFrame(
        {"at": _at(["2025-01-01", "2025-01-31", "2025-02-01"]), "x": 0.0, "y": [1.0, 0.0, 1.0]}
    )
    out = mature_labels(cur, roles, pd.Timestamp("2025-03-02", tz="UTC"))
    # Jan 1 + 30 d and Jan 31 + 30 d = Mar 2 are due; Feb 1 + 30 d = Mar 3 is not yet
    assert out["y"].tolist()[:2] == [1.0, 0.0] and np.isnan(out["y"].iloc[2])
    assert cur["y"].notna().all()  # the input is not modified


def test_performance_auc_drop_by_hand() -> None:
    cfg = DriftConfig(min_labelled_rows=4, auc_drop=0.05)
    roles = Roles(features=("x",), prediction="p", target="y", task="binary")
    # reference ranks perfectly (AUC 1); current: pairs (pos, neg) correctly ordered 3 of 4 -> AUC 0.75
    ref = pd.DataFrame({"y": [0, 0, 1, 1] * 50, "p": [0.1, 0.2, 0.8, 0.9] * 50})
    cur = pd.DataFrame({"y": [0, 0, 1, 1] * 50, "p": [0.1, 0.85, 0.8, 0.9] * 50})
    metrics, level, note = performance(ref, cur, roles, cfg)
    assert note is None and level == "drift"
    assert metrics["reference_auc"] == pytest.approx(1.0) and metrics["current_auc"] == pytest.approx(0.75)


def test_performance_waits_for_enough_matured_labels() -> None:
    cfg = DriftConfig(min_labelled_rows=200)
    roles = Roles(features=("x",), prediction="p", target="y")
    ref = pd.DataFrame({"y": [0, 1] * 200, "p": 0.5})
    cur = pd.DataFrame({"y": [0, 1, np.nan, np.nan] * 10, "p": 0.5})
    metrics, level, note = performance(ref, cur, roles, cfg)
    assert metrics == {} and level == "ok" and "20 current rows with matured labels" in str(note)


def test_performance_regression_mae_rise() -> None:
    cfg = DriftConfig(min_labelled_rows=2, mae_rise=0.2)
    roles = Roles(features=("x",), prediction="p", target="y", task="regression")
    ref = pd.DataFrame({"y": [10.0, 20.0], "p": [12.0, 18.0]})  # MAE 2
    cur = pd.DataFrame({"y": [10.0, 20.0], "p": [13.0, 17.0]})  # MAE 3: +50%
    metrics, level, _ = performance(ref, cur, roles, cfg)
    assert metrics["mae_rise"] == pytest.approx(0.5) and level == "drift"


def test_missing_feature_column_is_a_clear_error() -> None:
    roles = Roles(features=("spend_30d", "views_1h"))
    ref = pd.DataFrame({"spend_30d": [1.0], "views_1h": [0.0]})
    cur = pd.DataFrame({"spend_30d": [1.0]})
    with pytest.raises(DataError) as err:
        check_frames(ref, cur, roles, reference_name="ref.parquet", current_name="prediction log")
    msg = str(err.value)
    assert "prediction log" in msg and "views_1h" in msg and "what to do" in msg


def test_non_numeric_feature_names_rows_and_fix() -> None:
    roles = Roles(features=("spend_30d",))
    ref = pd.DataFrame({"spend_30d": [1.0, 2.0]})
    cur = pd.DataFrame({"spend_30d": ["1.0", "abc"]})
    with pytest.raises(DataError) as err:
        check_frames(ref, cur, roles, reference_name="ref", current_name="cur.parquet")
    e = err.value
    assert e.column == "spend_30d" and e.file == "cur.parquet" and e.row_numbers == [2]


def test_naive_timestamps_are_refused() -> None:
    roles = Roles(features=("x",), timestamp="at")
    ref = pd.DataFrame({"x": [1.0], "at": pd.to_datetime(["2025-01-01"])})
    with pytest.raises(DataError, match="timezone-aware"):
        check_frames(ref, ref, roles, reference_name="ref", current_name="cur")


def test_empty_current_is_refused() -> None:
    roles = Roles(features=("x",))
    with pytest.raises(DataError, match="no rows"):
        check_frames(
            pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": []}), roles, reference_name="r", current_name="c"
        )
