"""Labels on the hand-written orders (tests/features/conftest.py); expected values worked out by hand.

Orders: a at 2024-12-01, 2025-01-31, 2025-03-01 00:00, 2025-03-02 (999.0); b at 2025-02-10 (20.0); c none.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.labels import compute_labels
from rebuy.config import HorizonsConfig

FEB1 = pd.Timestamp("2025-02-01", tz="UTC")
MAR1 = pd.Timestamp("2025-03-01", tz="UTC")
HZ = HorizonsConfig(churn_days=60, repurchase_days=30, value_days=180)


def _labels(tables, cutoff, as_of):
    pairs = pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": [cutoff] * 3})
    return compute_labels(tables["orders"], pairs, HZ, pd.Timestamp(as_of, tz="UTC")).set_index("customer_id")


def test_labels_at_feb1(tables):
    out = _labels(tables, FEB1, "2025-12-31")
    a, b, c = out.loc["a"], out.loc["b"], out.loc["c"]
    # a buys on Mar 1 (28 days later) and Mar 2
    assert (a["churn"], a["repurchase"], a["days_to_next_order"], a["next_order_observed"]) == (0, 1, 28, 1)
    assert a["spend_next"] == pytest.approx(30 + 999)
    # b buys on Feb 10 (9 days later); b had no order at Feb 1 -> churn undefined
    assert math.isnan(b["churn"]) and b["repurchase"] == 1 and b["days_to_next_order"] == 9
    # c never buys: censored at as_of (333 days after Feb 1), churn undefined
    assert math.isnan(c["churn"]) and c["repurchase"] == 0 and c["spend_next"] == 0
    assert c["days_to_next_order"] == 333 and c["next_order_observed"] == 0


def test_order_at_cutoff_is_not_a_label(tables):
    out = _labels(tables, MAR1, "2025-12-31")
    # the Mar 1 00:00 order is at the cutoff (a feature); the next one is Mar 2
    assert out.loc["a", "days_to_next_order"] == 1 and out.loc["a", "spend_next"] == 999
    # b's last order was Feb 10 and nothing follows: churned, no repurchase
    assert (out.loc["b", "churn"], out.loc["b", "repurchase"]) == (1, 0)


def test_unmatured_windows_are_missing(tables):
    out = _labels(tables, MAR1, "2025-04-15")  # 45 days observed after the cutoff
    assert out["churn"].isna().all()  # 60-day window not over
    assert out.loc["a", "repurchase"] == 1  # 30-day window is over
    assert out["spend_next"].isna().all()
    assert out.loc["b", "days_to_next_order"] == 45 and out.loc["b", "next_order_observed"] == 0


def test_orders_after_as_of_are_ignored(tables):
    out = _labels(tables, FEB1, "2025-03-01")  # the Mar 2 order is beyond the data
    assert out.loc["a", "days_to_next_order"] == 28
    out = _labels(tables, pd.Timestamp("2025-03-01 12:00", tz="UTC"), "2025-03-01 18:00")
    assert out.loc["a", "next_order_observed"] == 0 and out.loc["a", "days_to_next_order"] == 0.25
