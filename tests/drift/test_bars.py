"""The issue's bars: shifts of stated size on a fresh shop are drift on the affected features, and only
those dominate; the unchanged fresh shop at the same season is ok.

Seeds are fixed (11 reference, 12 current, 5 for the shifts), chosen before looking. Rates over many
seeds are measured in benchmarks/drift.py, not here.
"""

from __future__ import annotations

import pandas as pd
import pytest
from drift_shop import double_new_customers, feature_rows, new_share, scale_order_values, thin_engagement

from pipelines.drift import Roles, analyse
from rebuy.config import DriftConfig

SPEND = {"spend_30d", "spend_90d", "spend_365d", "spend_total", "avg_order_value"}
ENGAGEMENT = {
    "engagement_rate_recent",
    "engagement_rate_baseline",
    "engagement_drop",
    "engagement_ratio",
    "days_since_engagement",
    "open_rate_trend",
    "click_rate_trend",
    # counts and rhythm of engagement events, and activity that includes them
    "engagements_30d",
    "engagements_90d",
    "engagements_total",
    "engagements_since_order",
    "engagement_gap_days",
    "engagement_overdue",
    "active_days_30d",
    "active_days_total",
    "days_since_event",
    # contact history: the share of recent messages opened and clicked is engagement with the messages
    "open_rate_last_n",
    "click_rate_last_n",
}
# a younger customer base moves what accumulates with customer age: the order history and how long
# ago the customer last did anything (a new customer has not looked up past orders for long, or ever)
HISTORY = {
    # messages received accumulate with customer age (a new customer has had few newsletters yet)
    *(f"messages_{w}d" for w in (7, 30, 90)),
    *(f"messages_{ch}_{w}d" for ch in ("email", "sms", "push") for w in (7, 30, 90)),
    "days_since_message",
    "unsubscribes_total",
    "unsubscribes_90d",
    "tenure_days",
    "orders_total",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "spend_total",
    "spend_30d",
    "spend_90d",
    "spend_365d",
    "gap_mean_days",
    "gap_std_days",
    "category_breadth",
    "is_single_buyer",
    "days_since_last_order",
    "overdue_ratio",
    "discount_share",
    "avg_order_value",
    "days_since_order_history_view",
    "days_since_delivery_check",
    "days_since_engagement",
    # totals, rhythms and since-the-last-order counts of events accumulate with customer age too
    "engagements_total",
    "views_total",
    "active_days_total",
    "engagement_gap_days",
    "view_gap_days",
    "engagements_since_order",
    "views_since_order",
    "engagement_overdue",
    "days_since_event",
}


def _roles(frame: pd.DataFrame) -> Roles:
    # instants (`*_at`, epoch seconds) grow with the calendar by construction; their request-time
    # "days since" columns carry the information and are monitored instead
    feats = tuple(c for c in frame.columns if c not in ("customer_id", "cutoff") and not c.endswith("_at"))
    return Roles(features=feats, timestamp="cutoff")


def _run(shops: dict, current: pd.DataFrame):
    ref = shops["reference"]
    return analyse("churn", ref, current, _roles(ref), DriftConfig(), shops["cutoff"])


def _assert_dominated_by(result, affected: set[str]) -> None:
    """A direct shift (values, rates): status drift, every drifted column affected, the top one too."""
    t = result.table
    drifted = set(t.loc[t["level"] == "drift", "column"])
    assert result.status.level == "drift", result.status.reasons
    assert drifted and drifted <= affected, f"drift outside the affected features: {drifted - affected}"
    assert t["column"].iloc[0] in affected  # the largest effect is an affected feature
    flagged = set(t.loc[t["level"] != "ok", "column"])
    assert len(flagged & affected) >= len(flagged - affected), (
        f"unaffected flags dominate: {flagged - affected}"
    )


def test_fresh_shop_same_season_is_ok(drift_shops: dict) -> None:
    result = _run(drift_shops, drift_shops["current"])
    assert result.status.level == "ok", result.status.reasons
    assert (result.table["level"] == "ok").all()


def test_order_values_plus_20_percent_is_drift_on_spend(drift_shops: dict) -> None:
    shifted = feature_rows(scale_order_values(drift_shops["current_tables"], 1.2), drift_shops["cutoff"])
    result = _run(drift_shops, shifted)
    _assert_dominated_by(result, SPEND)
    assert result.table.set_index("column").loc["avg_order_value", "level"] == "drift"


def test_engagement_minus_30_percent_is_drift_on_engagement(drift_shops: dict) -> None:
    shifted = feature_rows(thin_engagement(drift_shops["current_tables"], 0.7, seed=5), drift_shops["cutoff"])
    result = _run(drift_shops, shifted)
    _assert_dominated_by(result, ENGAGEMENT)
    levels = result.table.set_index("column")["level"]
    assert levels["engagement_rate_recent"] == "drift" and levels["engagement_rate_baseline"] == "drift"


def test_new_customer_share_doubled_is_drift_on_order_history(drift_shops: dict) -> None:
    tables = drift_shops["current_tables"]
    cutoff = drift_shops["cutoff"]
    shifted_tables = double_new_customers(tables, cutoff, seed=5)
    assert new_share(shifted_tables, cutoff) == pytest.approx(2 * new_share(tables, cutoff), rel=0.05)
    result = _run(drift_shops, feature_rows(shifted_tables, cutoff))
    # a change of the customer mix moves every feature that differs between new and older customers
    # (new customers also browse more), so "dominate" is: the five largest effects and at least 3/4 of
    # the drifted columns are the age-driven ones, and tenure itself leads
    t = result.table
    assert result.status.level == "drift", result.status.reasons
    assert t["column"].iloc[0] == "tenure_days"
    assert set(t["column"].head(5)) <= HISTORY, t.head(5)
    drifted = set(t.loc[t["level"] == "drift", "column"])
    assert len(drifted & HISTORY) >= 0.75 * len(drifted), f"outside: {drifted - HISTORY}"
