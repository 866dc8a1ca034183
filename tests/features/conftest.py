"""Hand-written canonical rows shared by the feature tests; expected values are worked out in each test."""

from __future__ import annotations

import pandas as pd
import pytest

from rebuy.contract import empty

C = pd.Timestamp("2025-03-01", tz="UTC")
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


def _customers() -> pd.DataFrame:
    df = pd.DataFrame({
        "customer_id": ["a", "b", "c"],
        "signup_at": pd.to_datetime(["2024-01-01", "2025-01-01", "2025-02-01"], utc=True),
    })
    base = empty("customers")
    return pd.concat([base, df], ignore_index=True).astype({"consent_email": bool, "consent_sms": bool,
                                                            "consent_push": bool})


def _orders() -> pd.DataFrame:
    rows = [
        ("o1", "a", "2024-12-01", 100.0, "X", 0.0),
        ("o2", "a", "2025-01-31", 50.0, "Y", 5.0),
        ("o3", "a", "2025-03-01", 30.0, "X", 0.0),  # exactly at the cutoff: included
        ("o4", "a", "2025-03-02", 999.0, "Z", 0.0),  # after the cutoff: never used
        ("o5", "b", "2025-02-10", 20.0, "X", 0.0),
    ]
    df = pd.DataFrame(rows, columns=["order_id", "customer_id", "ordered_at", "amount", "category", "discount"])
    df["ordered_at"] = pd.to_datetime(df["ordered_at"], utc=True).dt.as_unit("ns")
    df["items"] = 1
    df["returned_amount"] = 0.0
    return df


def _events() -> pd.DataFrame:
    rows = [
        ("a", C - 2 * H, "view", "X"),
        ("a", C - 30 * pd.Timedelta(minutes=1), "view", "X"),
        ("a", C - 10 * pd.Timedelta(minutes=1), "view", "X"),
        ("a", C, "view", "Y"),
        ("a", C + pd.Timedelta(minutes=1), "view", "X"),
        ("a", C - 3 * D, "view", "Z"),
        ("a", C - 2 * D, "cart", "X"),
        ("a", C - H, "cart", "X"),
        ("a", C - 5 * H, "order_history_view", None),
        ("a", C - 3 * H, "delivery_check", None),
        ("a", C - 10 * D, "order_history_view", None),
        ("a", C + H, "delivery_check", None),
        ("a", C - 1 * D, "email_open", None),
        ("a", C - 20 * D, "email_open", None),
        ("a", C - 30 * D, "email_open", None),
        ("a", C - 40 * D, "email_click", None),
        ("a", C, "app_open", None),
        ("a", C - 80 * D, "push_open", None),
        ("b", C - 80 * D, "push_open", None),
        ("b", C - 2 * D, "order_history_view", None),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "occurred_at", "event_type", "category"])
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True).dt.as_unit("ns")
    return df


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    return {"customers": _customers(), "orders": _orders(), "events": _events(),
            "consent_updates": empty("consent_updates")}


@pytest.fixture
def pairs() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": [C, C, C]})
