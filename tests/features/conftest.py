"""Hand-written canonical rows shared by the feature tests; expected values are worked out in each test."""

from __future__ import annotations

import pandas as pd
import pytest

from rebuy.contract import empty

C = pd.Timestamp("2025-03-01", tz="UTC")
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


def _customers() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "signup_at": pd.to_datetime(["2024-01-01", "2025-01-01", "2025-02-01"], utc=True),
        }
    )
    base = empty("customers")
    return pd.concat([base, df], ignore_index=True).astype(
        {"consent_email": bool, "consent_sms": bool, "consent_push": bool}
    )


def _orders() -> pd.DataFrame:
    rows = [
        ("o1", "a", "2024-12-01", 100.0, "X", 0.0),
        ("o2", "a", "2025-01-31", 50.0, "Y", 5.0),
        ("o3", "a", "2025-03-01", 30.0, "X", 0.0),  # exactly at the cutoff: included
        ("o4", "a", "2025-03-02", 999.0, "Z", 0.0),  # after the cutoff: never used
        ("o5", "b", "2025-02-10", 20.0, "X", 0.0),
    ]
    df = pd.DataFrame(
        rows, columns=["order_id", "customer_id", "ordered_at", "amount", "category", "discount"]
    )
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
    return {
        "customers": _customers(),
        "orders": _orders(),
        "events": _events(),
        "consent_updates": empty("consent_updates"),
    }


@pytest.fixture
def pairs() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": [C, C, C]})


def random_shop(
    seed: int, n_customers: int = 40, days: int = 200, *, contact: bool = False
) -> dict[str, pd.DataFrame]:
    """A small seeded shop in canonical form (vectorised), for as-of join, leakage and parity tests.

    `contact=True` adds random sends (`messages`) and consent withdrawals for the contact-history family.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    ids = np.array([f"cust-{i:03d}" for i in range(n_customers)], dtype=object)
    signup = start + pd.to_timedelta(rng.uniform(0, days / 2, n_customers), unit="D")
    customers = pd.concat(
        [empty("customers"), pd.DataFrame({"customer_id": ids, "signup_at": signup})], ignore_index=True
    )
    customers["consent_email"] = customers["consent_sms"] = customers["consent_push"] = False
    customers["signup_at"] = pd.to_datetime(customers["signup_at"], utc=True).dt.as_unit("ns")
    n_orders = n_customers * 6
    who = rng.integers(0, n_customers, n_orders)
    at = signup[who] + pd.to_timedelta(rng.uniform(0, days, n_orders), unit="D").floor("s")
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n_orders)],
            "customer_id": ids[who],
            "ordered_at": pd.DatetimeIndex(at).as_unit("ns"),
            "amount": rng.gamma(2.0, 30.0, n_orders).round(2),
            "category": rng.choice(["shoes", "bags", "tea"], n_orders),
            "discount": np.where(rng.random(n_orders) < 0.3, 5.0, 0.0),
            "items": 1,
            "returned_amount": 0.0,
        }
    )
    n_events = n_customers * 40
    who = rng.integers(0, n_customers, n_events)
    at = signup[who] + pd.to_timedelta(rng.uniform(0, days, n_events), unit="D").floor("s")
    events = pd.DataFrame(
        {
            "customer_id": ids[who],
            "occurred_at": pd.DatetimeIndex(at).as_unit("ns"),
            "event_type": rng.choice(
                [
                    "view",
                    "view",
                    "view",
                    "cart",
                    "order_history_view",
                    "delivery_check",
                    "email_open",
                    "email_click",
                    "app_open",
                ],
                n_events,
            ),
            "category": rng.choice(["shoes", "bags", "tea"], n_events),
        }
    )
    n_messages = n_customers * 12
    who = rng.integers(0, n_customers, n_messages)
    at = signup[who] + pd.to_timedelta(rng.uniform(0, days, n_messages), unit="D").floor("s")
    messages = pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(n_messages)],
            "customer_id": ids[who],
            "sent_at": pd.DatetimeIndex(at).as_unit("ns"),
            "channel": rng.choice(["email", "email", "sms", "push"], n_messages),
            "source": rng.choice(["newsletter", "rebuy", "import"], n_messages),
            "campaign": "c",
            "offer": rng.choice(
                np.array([None, None, "coupon_10pct", "points_x2"], dtype=object), n_messages
            ),
        }
    )
    n_updates = n_customers // 2
    who = rng.integers(0, n_customers, n_updates)
    at = signup[who] + pd.to_timedelta(rng.uniform(0, days, n_updates), unit="D").floor("s")
    updates = pd.DataFrame(
        {
            "customer_id": ids[who],
            "changed_at": pd.DatetimeIndex(at).as_unit("ns"),
            "channel": rng.choice(["email", "sms", "push"], n_updates),
            "consent": rng.random(n_updates) < 0.3,
            "source": None,
        }
    )
    if not contact:
        return {
            "customers": customers,
            "orders": orders,
            "events": events,
            "consent_updates": empty("consent_updates"),
        }
    return {
        "customers": customers,
        "orders": orders,
        "events": events,
        "consent_updates": updates,
        "messages": messages,
    }


@pytest.fixture
def shop() -> dict[str, pd.DataFrame]:
    return random_shop(11)


@pytest.fixture
def make_shop():
    return random_shop


@pytest.fixture
def cfg(tmp_path):
    from rebuy.config import Config, PathsConfig

    return Config(paths=PathsConfig(data_dir=tmp_path / "data"))
