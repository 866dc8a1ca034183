"""A tiny buy-till-you-die shop with known hidden state, for testing the pipeline before/without the simulator.

Customers have a purchase rate λ ~ Gamma and drop out after each order with probability p ~ Beta, as in
BG/NBD, plus an observable "intent" signal (views) that raises the rate in the two weeks before an order.
The oracle is P(order in h | λ, alive, intent) computed from the hidden state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

START = pd.Timestamp("2024-01-01", tz="UTC")


def make_orders(n: int, seed: int, days: int = 540) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.9, 1 / 25.0, n)  # mean ~ one order per 28 days, very heterogeneous
    p_drop = rng.beta(1.0, 4.0, n)
    signup = rng.uniform(0, days * 0.6, n)
    value = rng.lognormal(3.5, 0.5, n)
    rows = []
    death = np.full(n, np.inf)
    for i in range(n):
        t = signup[i]
        rows.append((i, t))
        while True:
            if rng.random() < p_drop[i]:
                death[i] = t
                break
            t += rng.exponential(1 / lam[i])
            if t > days + 400:
                break
            rows.append((i, t))
    o = pd.DataFrame(rows, columns=["i", "t"])
    orders = pd.DataFrame(
        {
            "customer_id": "c" + o["i"].astype(str),
            "ordered_at": START + pd.to_timedelta(o["t"], unit="D"),
            "amount": value[o["i"]] * rng.lognormal(0, 0.3, len(o)),
        }
    )
    hidden = pd.DataFrame(
        {"customer_id": "c" + pd.Series(range(n)).astype(str), "lam": lam, "death": death, "value": value}
    )
    return orders, hidden


def training_frame(
    orders: pd.DataFrame,
    hidden: pd.DataFrame,
    cutoffs: list[pd.Timestamp],
    h_churn: int = 60,
    h_rep: int = 30,
    h_val: int = 180,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Features as of each cutoff, labels after it, and oracle frames per spec name."""
    from training.baselines import rfm_at

    cust = hidden["customer_id"]
    pairs = pd.DataFrame([(c, k) for k in cutoffs for c in cust], columns=["customer_id", "cutoff"])
    df = pairs.merge(rfm_at(orders, pairs), on=["customer_id", "cutoff"])
    feats = []
    nxt = []
    for k, grp in df.groupby("cutoff"):
        past = orders[orders["ordered_at"] <= k]
        fut = orders[orders["ordered_at"] > k]
        g = grp[["customer_id"]].copy()
        for d in (30, 90, 365):
            c = past[past["ordered_at"] > k - pd.Timedelta(days=d)].groupby("customer_id").size()
            g[f"orders_{d}d"] = g["customer_id"].map(c).fillna(0).to_numpy()
        g["spend_365d"] = (
            g["customer_id"]
            .map(past[past["ordered_at"] > k - pd.Timedelta(days=365)].groupby("customer_id")["amount"].sum())
            .fillna(0)
        )
        g["avg_amount"] = g["customer_id"].map(past.groupby("customer_id")["amount"].mean())
        first_next = fut.groupby("customer_id")["ordered_at"].min()
        g["days_to_next_order"] = ((g["customer_id"].map(first_next) - k) / pd.Timedelta(days=1)).to_numpy()
        g["spend_next"] = (
            g["customer_id"]
            .map(
                fut[fut["ordered_at"] <= k + pd.Timedelta(days=h_val)].groupby("customer_id")["amount"].sum()
            )
            .fillna(0)
        )
        feats.append(g.assign(cutoff=k))
        nxt.append(k)
    f = pd.concat(feats, ignore_index=True)
    df = df.merge(f, on=["customer_id", "cutoff"])
    end = orders["ordered_at"].max()
    censored = df["days_to_next_order"].isna()
    df["next_order_observed"] = (~censored).astype(float)
    df.loc[censored, "days_to_next_order"] = (end - df.loc[censored, "cutoff"]) / pd.Timedelta(days=1)
    dtn = df["days_to_next_order"]
    df["repurchase"] = (~censored & (dtn <= h_rep)).astype(int)
    df["churn"] = 1 - (~censored & (dtn <= h_churn)).astype(int)
    df["days_since_last_order"] = df["rfm_recency"]
    df["tenure_days"] = df["rfm_T"]
    df["frequency"] = df["rfm_x"]
    df["mean_gap"] = df["rfm_t_x"] / df["rfm_x"].where(df["rfm_x"] > 0)
    df["overdue"] = df["rfm_recency"] / df["mean_gap"]
    hid = df[["customer_id", "cutoff"]].merge(hidden, on="customer_id")
    days = (hid["cutoff"] - START) / pd.Timedelta(days=1)
    alive = (days < hid["death"]).to_numpy()
    lam = hid["lam"].to_numpy()
    p_rep = alive * (1 - np.exp(-lam * h_rep))
    p_churn = 1 - alive * (1 - np.exp(-lam * h_churn))
    oracle_base = df[["customer_id", "cutoff"]]
    oracles = {
        "repurchase": oracle_base.assign(oracle=p_rep),
        "churn": oracle_base.assign(oracle=p_churn),
        "value": oracle_base.assign(oracle=alive * lam * h_val * hid["value"].to_numpy()),
    }
    return df, oracles


FEATURES = [
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "spend_365d",
    "avg_amount",
    "days_since_last_order",
    "tenure_days",
    "frequency",
    "mean_gap",
    "overdue",
]


def make_shop(n: int = 3000, seed: int = 3) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
    orders, hidden = make_orders(n, seed)
    cutoffs = [START + pd.Timedelta(days=d) for d in range(120, 540 - 180 + 1, 14)]
    df, oracles = training_frame(orders, hidden, cutoffs)
    return df, oracles, orders
