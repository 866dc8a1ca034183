"""Time-ordered split with purging, and spec resolution — on hand-written rows."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuy.config import Config
from rebuy.errors import DataError, RebuyError
from training.specs import default_specs, get_spec, resolve_features
from training.split import time_split

D = pd.Timestamp("2025-01-01", tz="UTC")


def frame(days: list[int], customers: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"c{i}", D + pd.Timedelta(days=d), i % 2) for d in days for i in range(customers)],
        columns=["customer_id", "cutoff", "y"],
    )


def test_latest_cutoffs_are_test_then_validation_and_overlapping_rows_are_purged_both_ways():
    # cutoffs every 10 days: 0..90, horizon 25. test = {80, 90}. Validation: the latest 2 cutoffs whose window
    # ends by day 80 (c + 25 <= 80 -> c <= 55): {40, 50}; 60 and 70 are purged. Training: c + 25 <= 40 ->
    # c <= 15: {0, 10}; 20 and 30 are purged.
    df = frame(list(range(0, 100, 10)))
    sp = time_split(df, horizon_days=25, test_cutoffs=2, valid_cutoffs=2)
    days = lambda part: sorted({(c - D).days for c in part["cutoff"]})  # noqa: E731
    assert days(sp.test) == [80, 90]
    assert sorted(set(days(sp.valid)) | set(days(sp.calib))) == [40, 50]
    assert days(sp.train) == [0, 10]
    assert sp.purged_rows == 4 * 4
    # no training label window reaches the validation period, no validation window the test period
    assert (sp.train["cutoff"] + pd.Timedelta(days=25)).max() <= sp.valid_start
    valid = pd.concat([sp.valid, sp.calib])
    assert (valid["cutoff"] + pd.Timedelta(days=25)).max() <= sp.test_start
    # validation and calibration are disjoint customer sets of the same cutoffs
    assert not set(sp.valid["customer_id"]) & set(sp.calib["customer_id"])
    assert len(sp.valid) + len(sp.calib) == 2 * 4


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=40),
    step=st.integers(min_value=1, max_value=35),
    horizon=st.integers(min_value=1, max_value=200),
    test_cutoffs=st.integers(min_value=1, max_value=3),
    valid_cutoffs=st.integers(min_value=1, max_value=3),
)
def test_no_label_window_ever_reaches_the_next_period(n, step, horizon, test_cutoffs, valid_cutoffs):
    df = frame([i * step for i in range(n)], customers=3)
    try:
        sp = time_split(df, horizon_days=horizon, test_cutoffs=test_cutoffs, valid_cutoffs=valid_cutoffs)
    except DataError:
        # refused only when the history really cannot hold test, purged validation and purged training
        cutoffs = sorted(df["cutoff"].unique())
        test_start = cutoffs[-test_cutoffs] if len(cutoffs) >= test_cutoffs else None
        h = pd.Timedelta(days=horizon)
        eligible = [c for c in cutoffs if test_start is not None and c + h <= test_start]
        fits = len(eligible) >= valid_cutoffs and any(
            c + h <= eligible[-valid_cutoffs] for c in eligible[:-valid_cutoffs] or [pd.NaT]
        )
        assert len(cutoffs) < test_cutoffs + valid_cutoffs + 1 or not fits
        return
    h = pd.Timedelta(days=horizon)
    valid = pd.concat([sp.valid, sp.calib])
    assert (valid["cutoff"] + h <= sp.test_start).all()  # no validation window touches the test period
    assert (sp.train["cutoff"] + h <= sp.valid_start).all()  # no training window touches validation
    assert sp.train["cutoff"].max() < sp.valid_start <= valid["cutoff"].min()
    assert valid["cutoff"].max() < sp.test_start == sp.test["cutoff"].min()
    assert valid["cutoff"].nunique() == valid_cutoffs and sp.test["cutoff"].nunique() == test_cutoffs
    # every row is in exactly one part or counted as purged
    assert len(sp.train) + len(valid) + len(sp.test) + sp.purged_rows == len(df)
    # the validation cutoffs are the latest allowed: the next cutoff's window would reach the test period
    later = df.loc[(df["cutoff"] > valid["cutoff"].max()) & (df["cutoff"] < sp.test_start), "cutoff"]
    assert (later + h > sp.test_start).all()


def test_horizon_equal_to_gap_keeps_the_row_whose_window_ends_at_validation_start():
    df = frame([0, 10, 20, 30, 40])  # test {30, 40}, validation {20} with valid_cutoffs=1
    sp = time_split(df, horizon_days=10, test_cutoffs=2, valid_cutoffs=1)
    assert sorted({(c - D).days for c in sp.train["cutoff"]}) == [
        0,
        10,
    ]  # 10 + 10 == 20: window ends at start


def test_too_few_cutoffs_or_nothing_left_to_train_is_a_clear_error():
    with pytest.raises(DataError, match="needs at least 5"):
        time_split(frame([0, 10, 20, 30]), horizon_days=1, test_cutoffs=2, valid_cutoffs=2)
    with pytest.raises(DataError, match=r"only 0 cutoffs .* ends before the test period"):
        time_split(frame([0, 10, 20, 30, 40]), horizon_days=365, test_cutoffs=2, valid_cutoffs=2)
    # validation fits ({0, 10} end by day 30) but nothing before it does
    with pytest.raises(DataError, match="no training rows left"):
        time_split(frame([0, 10, 20, 30, 40]), horizon_days=15, test_cutoffs=2, valid_cutoffs=2)


def test_spec_naming_a_missing_feature_service_fails_with_what_exists():
    spec = get_spec(Config(), "churn")
    with pytest.raises(RebuyError) as err:
        resolve_features(spec, {"repurchase_v2": ["a"], "churn_v1": ["b"]})
    msg = str(err.value)
    assert "churn_v2" in msg and "repurchase_v2" in msg and "churn_v1" in msg and "what to do" in msg
    assert resolve_features(spec, {"churn_v2": ["x", "y"]}) == ["x", "y"]


def test_known_services_keep_every_version_so_older_champions_still_resolve():
    from training.run import known_services

    services = known_services()
    assert {
        "churn_v1",
        "repurchase_v1",
        "value_v1",
        "offer_v1",
        "churn_v2",
        "repurchase_v2",
        "value_v2",
    } <= set(services)
    # v2 = v1 + the activity family and its request-time features; v1 is unchanged (32 churn features)
    assert len(services["churn_v1"]) == 32 and "engagements_total" not in services["churn_v1"]
    added = [f for f in services["churn_v2"] if f not in services["churn_v1"]]
    assert {"engagements_total", "views_since_order", "days_since_event", "engagement_overdue"} <= set(added)
    assert [f for f in services["churn_v2"] if f in services["churn_v1"]] == services["churn_v1"]
    assert all(
        get_spec(Config(), m).feature_service.endswith("_v2") for m in ("churn", "repurchase", "value")
    )


def test_specs_take_horizons_from_config_and_unknown_models_are_refused():
    cfg = Config.model_validate({"horizons": {"churn_days": 90, "repurchase_days": 14, "value_days": 120}})
    specs = default_specs(cfg)
    assert (specs["churn"].horizon_days, specs["repurchase"].horizon_days, specs["value"].horizon_days) == (
        90,
        14,
        120,
    )
    assert {s.registered_name for s in specs.values()} == {
        "rebuy-churn",
        "rebuy-repurchase",
        "rebuy-days-to-next",
        "rebuy-value",
    }
    with pytest.raises(RebuyError, match="unknown model"):
        get_spec(cfg, "lifetime")
