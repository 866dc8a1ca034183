"""Season matching, weekday-matched sampling, label maturity, performance and input errors on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.drift import (
    Roles,
    check_frames,
    mature_labels,
    performance,
    sample_matched,
    seasonal_reference,
)
from rebuy.config import DriftConfig
from rebuy.errors import DataError


def _at(days: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(days, utc=True))


def test_seasonal_reference_keeps_same_season_of_any_year_across_new_year() -> None:
    ref = pd.DataFrame({"at": _at(["2024-12-20", "2024-06-15", "2024-01-20", "2024-02-25", "2024-09-01"])})
    cur = pd.DataFrame({"at": _at(["2025-01-05", "2025-01-06"])})
    kept, note = seasonal_reference(ref, cur, "at", window_days=20, min_rows=1)
    # Dec 20 is 16 days before Jan 5 (circular), Jan 20 is 14 after Jan 6; Feb 25 is 50 days away
    assert list(kept["at"].dt.strftime("%m-%d")) == ["12-20", "01-20"]
    assert "2 of 5" in note


def test_seasonal_reference_falls_back_to_everything_and_says_so() -> None:
    ref = pd.DataFrame({"at": _at(["2024-06-15", "2024-07-01", "2024-01-20"])})
    cur = pd.DataFrame({"at": _at(["2025-01-05"])})
    kept, note = seasonal_reference(ref, cur, "at", window_days=20, min_rows=2)
    assert len(kept) == 3 and "whole reference is used" in note
    kept, note = seasonal_reference(ref, cur.rename(columns={"at": "x"}), "at", window_days=20, min_rows=2)
    assert len(kept) == 3 and "no season matching" in note


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
