"""Fresh shop samples and the bars' shifts, applied to canonical tables.

`shop_tables` runs the project simulator (`rebuy.simulator`); a small vectorised stand-in of the same
shape (zero-inflated spend, right-skewed order values, engagement events) is used only where the
simulator is not importable. The shifts act on canonical tables, so they work on either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.compute import compute_features, epoch_seconds, request_time_features

ENGAGEMENT = ("email_open", "email_click", "push_open", "app_open")
NEW_DAYS = 90


def _fallback_shop(n: int, seed: int, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    days = 730
    start = end - pd.Timedelta(days=days)
    signup = rng.uniform(0, days, n)
    ids = np.array([f"c{seed}_{i}" for i in range(n)], dtype=object)
    # orders: heterogeneous Poisson rates, first order at signup, lognormal values (p90 ≈ 3× median)
    rate = rng.gamma(0.6, 1 / 60.0, n)
    alive_days = np.minimum(days - signup, rng.exponential(400, n))
    k = rng.poisson(rate * alive_days)
    cust = np.repeat(np.arange(n), k + 1)
    t = signup[cust] + np.where(
        np.concatenate([[True], cust[1:] != cust[:-1]]), 0.0, rng.uniform(0, 1, len(cust)) * alive_days[cust]
    )
    value = rng.lognormal(3.6, 0.85, len(cust))
    orders = pd.DataFrame(
        {
            "order_id": [f"o{seed}_{j}" for j in range(len(cust))],
            "customer_id": ids[cust],
            "ordered_at": start + pd.to_timedelta(t, unit="D"),
            "amount": value.round(2),
            "category": rng.choice(["a", "b", "c", "d"], len(cust)),
            "discount": np.where(rng.random(len(cust)) < 0.2, 5.0, 0.0),
            "items": rng.integers(1, 4, len(cust)),
            "returned_amount": 0.0,
        }
    )
    # events over the last 120 days: engagement at a per-customer rate, plus views and lookups
    ev_days = 120.0
    eng_rate = rng.gamma(1.0, 0.15, n)
    view_rate = rng.gamma(0.8, 0.3, n)
    n_eng = rng.poisson(eng_rate * ev_days)
    n_view = rng.poisson(view_rate * ev_days)
    ce = np.repeat(np.arange(n), n_eng)
    cv = np.repeat(np.arange(n), n_view)
    frames = []
    for c, types in (
        (ce, ENGAGEMENT),
        (cv, ("view", "view", "view", "cart", "order_history_view", "delivery_check")),
    ):
        when = end - pd.to_timedelta(rng.uniform(0, ev_days, len(c)), unit="D")
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids[c],
                    "occurred_at": when,
                    "event_type": rng.choice(list(types), len(c)),
                    "category": rng.choice(["a", "b", "c", "d"], len(c)),
                }
            )
        )
    events = pd.concat(frames, ignore_index=True)
    signup_of = pd.Series(start + pd.to_timedelta(signup, unit="D"), index=ids)
    events = events[events["occurred_at"].to_numpy() >= signup_of.reindex(events["customer_id"]).to_numpy()]
    events = events.reset_index(drop=True)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_at": start + pd.to_timedelta(signup, unit="D"),
            "birthday": pd.NaT,
            "timezone": "UTC",
            "region": "x",
            "consent_email": True,
            "consent_sms": False,
            "consent_push": True,
        }
    )
    for df, col in ((orders, "ordered_at"), (events, "occurred_at"), (customers, "signup_at")):
        df[col] = df[col].dt.as_unit("ns")
    return {"customers": customers, "orders": orders, "events": events}


def shop_tables(n: int, seed: int, end: pd.Timestamp, months: int = 12) -> dict[str, pd.DataFrame]:
    """Canonical tables of a fresh simulated shop whose history ends at `end` (midnight UTC).

    Twelve months keep the tests quick while every window feature (up to 365 days) is filled; two
    shops with the same `end` and different seeds are "the unchanged simulator at the same season".
    """
    try:
        from rebuy.simulator import ShopSimulator, SimConfig
    except ImportError:  # the simulator is not installed: a stand-in of the same shape
        return _fallback_shop(n, seed, end)
    start = (end - pd.DateOffset(months=months)).strftime("%Y-%m-%d")
    sim = ShopSimulator(SimConfig(customers=n, months=months, seed=seed, events=True, start=start))
    tables = sim.run_history()
    if sim.now != end:
        raise ValueError(f"simulated history ends {sim.now}, expected {end}")
    return tables


# --- the bars' shifts ----------------------------------------------------------------------------------


def scale_order_values(tables: dict[str, pd.DataFrame], factor: float) -> dict[str, pd.DataFrame]:
    out = dict(tables)
    orders = tables["orders"].copy()
    orders["amount"] = orders["amount"] * factor
    out["orders"] = orders
    return out


def thin_engagement(tables: dict[str, pd.DataFrame], keep: float, seed: int) -> dict[str, pd.DataFrame]:
    """Every engagement event survives with probability `keep`: the population's rates fall by 1 − keep."""
    out = dict(tables)
    ev = tables["events"]
    rng = np.random.default_rng(seed)
    drop = ev["event_type"].isin(ENGAGEMENT).to_numpy() & (rng.random(len(ev)) >= keep)
    out["events"] = ev[~drop].reset_index(drop=True)
    return out


def new_share(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> float:
    c = tables["customers"]
    c = c[c["signup_at"] <= cutoff]
    return float((c["signup_at"] > cutoff - pd.Timedelta(days=NEW_DAYS)).mean())


def double_new_customers(
    tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp, seed: int
) -> dict[str, pd.DataFrame]:
    """Keep every new customer (signed up within NEW_DAYS) and sub-sample the others so the new share doubles.

    With new share s, keeping a fraction f = (1 − 2s) / (2(1 − s)) of the others gives exactly 2s.
    """
    c = tables["customers"]
    c = c[c["signup_at"] <= cutoff]
    is_new = c["signup_at"] > cutoff - pd.Timedelta(days=NEW_DAYS)
    s = float(is_new.mean())
    f = (1 - 2 * s) / (2 * (1 - s))
    rng = np.random.default_rng(seed)
    keep_ids = set(c.loc[is_new | (rng.random(len(c)) < f), "customer_id"])
    return {name: df[df["customer_id"].isin(keep_ids)].reset_index(drop=True) for name, df in tables.items()}


def feature_rows(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> pd.DataFrame:
    """Features at one cutoff with the request-time columns, as a served row would carry them."""
    feats = compute_features(tables, [cutoff])
    for name, values in request_time_features(feats, epoch_seconds(cutoff)).items():
        feats[name] = values
    return feats


def drop_events(
    tables: dict[str, pd.DataFrame], event_type: str, since: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """A tracking outage: no `event_type` events after `since` (e.g. the add-to-cart tag broke)."""
    out = dict(tables)
    ev = tables["events"]
    out["events"] = ev[~((ev["event_type"] == event_type) & (ev["occurred_at"] > since))].reset_index(
        drop=True
    )
    return out
