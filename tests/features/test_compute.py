"""Each family on hand-written rows (tests/features/conftest.py); every expected value is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.compute import (
    ACTIVITY,
    ENGAGEMENT,
    LOOKUPS,
    VIEW_BURSTS,
    activity_features,
    compute_features,
    customer_pairs,
    engagement_features,
    lookup_features,
    order_history_features,
    request_time_features,
    view_burst_features,
)
from rebuy.contract import empty
from rebuy.errors import DataError

NAN = float("nan")
C = pd.Timestamp("2025-03-01", tz="UTC")  # the cutoff of the hand-written rows (conftest.py)
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


def _row(df: pd.DataFrame, cid: str) -> dict:
    return df.loc[df["customer_id"] == cid].iloc[0].to_dict()


def _check(actual: dict, expected: dict) -> None:
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got), f"{key}: expected NaN (missing), got {got}"
        else:
            assert got == pytest.approx(want, abs=1e-9), f"{key}: expected {want}, got {got}"


def test_order_history_by_hand(tables, pairs):
    out = order_history_features(tables["orders"], tables["customers"], pairs)
    assert list(out["customer_id"]) == ["a", "b", "c"]
    # a: orders 2024-12-01 (100, X), 2025-01-31 (50, Y, discounted), 2025-03-01 00:00 = the cutoff (30, X);
    # 2025-03-02 is after the cutoff. Dec 1 is exactly 90 days before Mar 1: outside (cutoff-90d, cutoff].
    _check(
        _row(out, "a"),
        {
            "orders_total": 3,
            "orders_30d": 2,
            "orders_90d": 2,
            "orders_365d": 3,
            "spend_total": 180,
            "spend_30d": 80,
            "spend_90d": 80,
            "spend_365d": 180,
            "avg_order_value": 60,
            "gap_mean_days": 45,  # gaps 61 and 29 days
            "gap_std_days": math.sqrt(16**2 + 16**2),  # sample std of (61, 29)
            "last_order_at": C.value / 1e9,
            "category_breadth": 2,
            "discount_share": 1 / 3,
            "tenure_days": 366 + 59,
            "is_single_buyer": 0,
        },
    )
    # b: a single order -> gap statistics are missing, not zero
    _check(
        _row(out, "b"),
        {
            "orders_total": 1,
            "orders_30d": 1,
            "spend_total": 20,
            "avg_order_value": 20,
            "gap_mean_days": NAN,
            "gap_std_days": NAN,
            "is_single_buyer": 1,
            "tenure_days": 59,
            "last_order_at": pd.Timestamp("2025-02-10", tz="UTC").value / 1e9,
        },
    )
    # c: no orders -> counts and sums 0, averages and instants missing
    _check(
        _row(out, "c"),
        {
            "orders_total": 0,
            "spend_total": 0,
            "avg_order_value": NAN,
            "gap_mean_days": NAN,
            "last_order_at": NAN,
            "category_breadth": 0,
            "discount_share": NAN,
            "tenure_days": 28,
            "is_single_buyer": 0,
        },
    )


def test_order_history_several_cutoffs_and_two_orders(tables):
    feb1 = pd.Timestamp("2025-02-01", tz="UTC")
    out = order_history_features(tables["orders"], tables["customers"], [feb1, C])
    assert len(out) == 6  # 3 customers x 2 cutoffs
    a = out[(out["customer_id"] == "a") & (out["cutoff"] == feb1)].iloc[0].to_dict()
    # two orders (Dec 1, Jan 31): one gap of 61 days, its spread is undefined
    _check(a, {"orders_total": 2, "gap_mean_days": 61, "gap_std_days": NAN, "spend_total": 150})


def test_rows_exactly_at_cutoff_are_included_later_never(tables):
    just_before = C - pd.Timedelta(nanoseconds=1)
    pairs = pd.DataFrame({"customer_id": ["a", "a"], "cutoff": [just_before, C]})
    oh = order_history_features(tables["orders"], tables["customers"], pairs)
    assert list(oh["orders_total"]) == [2, 3]
    vb = view_burst_features(tables["events"], tables["orders"], pairs)
    assert list(vb["views_1h"]) == [2, 3]  # the view at exactly C counts at C only


def test_view_bursts_by_hand(tables, pairs):
    out = view_burst_features(tables["events"], tables["orders"], pairs)
    # a's views before C: -3d (Z), -2h (X), -30min (X), -10min (X), 0 (Y); +1min is after the cutoff.
    # In [C-60min, C] there are 3 views. X was bought (Dec 1), Y (Jan 31), Z only after C.
    _check(
        _row(out, "a"),
        {
            "views_1h": 3,
            "views_24h": 4,
            "views_7d": 5,
            "max_views_in_burst": 3,
            "max_category_views_7d": 3,
            "bought_category_views_7d": 4,
            "carts_24h": 1,
            "carts_7d": 2,
        },
    )
    for cid in ("b", "c"):  # the shop has events; these customers simply have no views
        _check(_row(out, cid), dict.fromkeys(VIEW_BURSTS, 0.0))


def test_lookups_by_hand(tables, pairs):
    out = lookup_features(tables["events"], pairs)
    _check(
        _row(out, "a"),
        {
            "order_history_views_7d": 1,
            "order_history_views_30d": 2,
            "delivery_checks_7d": 1,
            "delivery_checks_30d": 1,  # the check at C+1h is in the future
            "last_order_history_view_at": (C - 5 * H).value / 1e9,
            "last_delivery_check_at": (C - 3 * H).value / 1e9,
            "intent_components_24h": 3,
            "intent_signal_24h": 1,  # 3 views of X + lookup + check within 24 h
        },
    )
    _check(
        _row(out, "b"),
        {
            "order_history_views_7d": 1,
            "last_delivery_check_at": NAN,
            "intent_components_24h": 0,
            "intent_signal_24h": 0,  # the lookup was 2 days ago
        },
    )
    _check(_row(out, "c"), {"order_history_views_30d": 0, "last_order_history_view_at": NAN})


def test_engagement_by_hand(tables, pairs):
    out = engagement_features(tables["events"], pairs, recent_days=14, baseline_days=56)
    # a, recent (C-14d, C]: email_open -1d, app_open at C -> 2/14 per day;
    # baseline (C-70d, C-14d]: opens -20d, -30d, click -40d -> 3/56; the push_open at -80d is outside both.
    _check(
        _row(out, "a"),
        {
            "engagement_rate_recent": 2 / 14,
            "engagement_rate_baseline": 3 / 56,
            "engagement_drop": 3 / 56 - 2 / 14,
            "engagement_ratio": (2 / 14) / (3 / 56),
            "last_engagement_at": C.value / 1e9,
            "open_rate_trend": 1 / 14 - 2 / 56,
            "click_rate_trend": 0 - 1 / 56,
        },
    )
    # b engaged only 80 days ago: no baseline to compare with -> ratio missing, drop 0
    _check(
        _row(out, "b"),
        {
            "engagement_rate_recent": 0,
            "engagement_rate_baseline": 0,
            "engagement_drop": 0,
            "engagement_ratio": NAN,
            "last_engagement_at": (C - 80 * D).value / 1e9,
        },
    )
    _check(_row(out, "c"), {"engagement_ratio": NAN, "last_engagement_at": NAN})


def test_activity_by_hand(tables, pairs):
    out = activity_features(tables["events"], tables["orders"], tables["customers"], pairs)
    # a signed up 2024-01-01: tenure 425 days at C. Engagements <= C: email opens -1d, -20d, -30d, the click
    # at -40d, the app_open at C, the push_open at -80d (6); -30d is outside (C-30d, C]. Views <= C: -3d,
    # -2h, -30min, -10min and at C (5; the one at C+1min is later). The last order is at C itself, so
    # nothing is strictly after it. Active days: Feb 28, Mar 1, Feb 26, Feb 27, Feb 19, Feb 9 inside 30 days,
    # plus Jan 30, Jan 20 and Dec 11 in total.
    _check(
        _row(out, "a"),
        {
            "engagements_total": 6,
            "engagements_30d": 3,
            "engagements_90d": 6,
            "engagements_since_order": 0,
            "engagement_gap_days": 425 / 6,
            "views_total": 5,
            "views_30d": 5,
            "views_90d": 5,
            "views_since_order": 0,
            "view_gap_days": 85.0,
            "active_days_30d": 6,
            "active_days_total": 9,
            "last_event_at": C.value / 1e9,
        },
    )
    # b (tenure 59 days): one push_open 80 days ago (before the last order, Feb 10), one lookup 2 days ago
    _check(
        _row(out, "b"),
        {
            "engagements_total": 1,
            "engagements_30d": 0,
            "engagements_90d": 1,
            "engagements_since_order": 0,
            "engagement_gap_days": 59.0,
            "views_total": 0,
            "view_gap_days": NAN,
            "active_days_30d": 1,
            "active_days_total": 2,
            "last_event_at": (C - 2 * D).value / 1e9,
        },
    )
    # c: no events at all -> counts 0, the customer's own rhythm and last event unknown (missing)
    _check(
        _row(out, "c"),
        {"engagements_total": 0, "active_days_total": 0, "engagement_gap_days": NAN, "last_event_at": NAN},
    )
    # two hours after C the view at C+1min is after the last order (still the one at C; o4 is Mar 2)
    later = activity_features(tables["events"], tables["orders"], tables["customers"], [C + 2 * H], con=None)
    _check(_row(later, "a"), {"views_since_order": 1, "engagements_since_order": 0, "views_total": 6})


def test_orders_only_event_features_missing(tables, pairs):
    orders_only = dict(tables, events=empty("events"))
    out = compute_features(orders_only, pairs)
    assert len(out) == 3
    assert out[list(VIEW_BURSTS + LOOKUPS + ENGAGEMENT + ACTIVITY)].isna().all().all()
    assert out["orders_total"].tolist() == [3, 1, 0]


def test_compute_features_pairs_from_cutoffs(tables):
    jan15 = pd.Timestamp("2025-01-15", tz="UTC")
    out = compute_features(tables, [jan15, C])
    # c signed up on Feb 1 and b on Jan 1: at Jan 15 only a and b exist
    assert sorted(map(tuple, out[["customer_id", "cutoff"]].astype(str).to_numpy())) == sorted(
        [("a", str(jan15)), ("b", str(jan15)), ("a", str(C)), ("b", str(C)), ("c", str(C))]
    )
    assert out.columns[:2].tolist() == ["customer_id", "cutoff"]
    assert (out.dtypes.iloc[2:] == np.float64).all()


def test_customer_pairs_exclude_future_signups(tables):
    pairs = customer_pairs(tables["customers"], [pd.Timestamp("2025-01-01", tz="UTC")])
    assert sorted(pairs["customer_id"]) == ["a", "b"]  # b signed up exactly at the cutoff


def test_request_time_features():
    now = pd.Timestamp("2025-03-11", tz="UTC").value / 1e9
    stored = {
        "last_order_at": np.array([C.value / 1e9, np.nan]),
        "gap_mean_days": np.array([5.0, np.nan]),
        "last_order_history_view_at": np.array([np.nan, C.value / 1e9]),
        "last_delivery_check_at": np.array([np.nan, np.nan]),
        "last_engagement_at": np.array([now - 5 * 86_400, np.nan]),
        "engagement_gap_days": np.array([2.5, 4.0]),
        "last_event_at": np.array([now - 86_400 / 2, C.value / 1e9]),
        "last_message_at": np.array([np.nan, now - 3 * 86_400]),
    }
    out = request_time_features(stored, now)
    np.testing.assert_allclose(out["days_since_message"], [np.nan, 3.0])
    np.testing.assert_allclose(out["days_since_last_order"], [10.0, np.nan])
    np.testing.assert_allclose(out["overdue_ratio"], [2.0, np.nan])  # 10 days since / 5-day cycle
    np.testing.assert_allclose(out["days_since_order_history_view"], [np.nan, 10.0])
    np.testing.assert_allclose(out["days_since_engagement"], [5.0, np.nan])
    np.testing.assert_allclose(out["days_since_event"], [0.5, 10.0])
    # 5 silent days against one engagement every 2.5 days on average: two engagements overdue
    np.testing.assert_allclose(out["engagement_overdue"], [2.0, np.nan])


def test_naive_cutoff_is_a_clear_error(tables):
    with pytest.raises(DataError, match="naive"):
        order_history_features(tables["orders"], tables["customers"], [pd.Timestamp("2025-03-01")])


def test_missing_column_is_a_clear_error(tables, pairs):
    with pytest.raises(DataError, match=r"orders table lacks required columns \['amount'\]") as err:
        compute_features(dict(tables, orders=tables["orders"].drop(columns="amount")), pairs)
    assert "read_canonical" in str(err.value)


def test_naive_event_timestamps_are_a_clear_error(tables, pairs):
    events = tables["events"].assign(occurred_at=tables["events"]["occurred_at"].dt.tz_localize(None))
    with pytest.raises(DataError, match="timezone-aware UTC") as err:
        engagement_features(events, pairs)
    assert "occurred_at" in str(err.value)
