"""Small shops for the orchestrator tests: built in memory in milliseconds, canonical form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rebuy.config import Config, PathsConfig
from rebuy.ingest import conform

AS_OF = pd.Timestamp("2025-06-10 12:00", tz="UTC")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Shanghai", "Australia/Sydney", None]


def make_shop(n: int, seed: int, as_of: pd.Timestamp = AS_OF) -> dict[str, pd.DataFrame]:
    """`n` customers with a few orders and views each in the 120 days before `as_of`, random consents,
    timezones and birthdays, and a consent-update feed."""
    rng = np.random.default_rng(seed)
    ids = [f"c{seed}-{i:05d}" for i in range(n)]
    signup = as_of - pd.to_timedelta(rng.integers(40, 400, n), unit="D")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_at": signup,
            "birthday": pd.to_datetime("1980-01-01")
            + pd.to_timedelta(rng.integers(0, 365 * 20, n), unit="D"),
            "timezone": [ZONES[i] for i in rng.integers(0, len(ZONES), n)],
            "consent_email": rng.random(n) < 0.85,
            "consent_sms": rng.random(n) < 0.3,
            "consent_push": rng.random(n) < 0.6,
        }
    )
    n_orders = rng.integers(0, 4, n)
    oc = np.repeat(ids, n_orders)
    ots = as_of - pd.to_timedelta(rng.uniform(0, 120, len(oc)), unit="D")
    orders = pd.DataFrame(
        {
            "order_id": [f"o{seed}-{i}" for i in range(len(oc))],
            "customer_id": oc,
            "ordered_at": ots.floor("s"),
            "amount": rng.gamma(2.0, 30.0, len(oc)).round(2),
        }
    )
    ev_c = rng.choice(ids, size=n * 2)
    events = pd.DataFrame(
        {
            "customer_id": ev_c,
            "occurred_at": (as_of - pd.to_timedelta(rng.uniform(0, 5, len(ev_c)), unit="D")).floor("s"),
            "event_type": rng.choice(["view", "cart", "email_open"], size=len(ev_c)),
        }
    )
    uc = rng.choice(ids, size=max(1, n // 5))
    updates = pd.DataFrame(
        {
            "customer_id": uc,
            "changed_at": (as_of - pd.to_timedelta(rng.uniform(-3, 60, len(uc)), unit="D")).floor("s"),
            "channel": rng.choice(["email", "sms", "push"], size=len(uc)),
            "consent": rng.random(len(uc)) < 0.3,
        }
    )
    return {
        "customers": conform("customers", customers),
        "orders": conform("orders", orders),
        "events": conform("events", events),
        "consent_updates": conform("consent_updates", updates),
    }


def config_for(tmp: Path, **policy: object) -> Config:
    cfg = Config(paths=PathsConfig(data_dir=tmp))
    if policy:
        cfg = cfg.model_copy(update={"policy": cfg.policy.model_copy(update=policy)})
    return cfg


@pytest.fixture()
def shop() -> dict[str, pd.DataFrame]:
    return make_shop(300, seed=1)
