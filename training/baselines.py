"""Baselines every model run is compared with: recency only, and BG/NBD (Fader, Hardie & Lee 2005).

Both need only the order history at each cutoff (`rfm_at`), so they also run on orders-only shops and
tell whether the feature pipeline and LightGBM add anything over the classic buy-till-you-die model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeResult, minimize
from scipy.special import gammaln
from sklearn.linear_model import LogisticRegression

from rebuy.errors import DataError

RFM_COLUMNS = ("rfm_orders", "rfm_x", "rfm_t_x", "rfm_T", "rfm_recency")
DAY = pd.Timedelta(days=1)


def rfm_at(orders: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Order history summary per (customer_id, cutoff), using orders with ordered_at <= cutoff only.

    rfm_orders: orders so far; rfm_x: repeat orders (orders − 1, BG/NBD's x); rfm_t_x: days from first to
    last order; rfm_T: days from first order to the cutoff; rfm_recency: days since the last order.
    Customers without orders get rfm_orders = 0 and NaN for the rest.
    """
    for col in ("customer_id", "ordered_at"):
        if col not in orders.columns:
            raise DataError(
                "orders table is missing a column the baselines need",
                column=col,
                hint="pass canonical orders (rebuy import)",
            )
    out = []
    o = orders[["customer_id", "ordered_at"]]
    for cutoff, grp in pairs.groupby("cutoff", sort=True):
        seen = o[o["ordered_at"] <= cutoff].groupby("customer_id")["ordered_at"].agg(["count", "min", "max"])
        g = grp[["customer_id", "cutoff"]].join(seen, on="customer_id")
        n = g["count"].fillna(0).astype("int64")
        res = pd.DataFrame({"customer_id": g["customer_id"].to_numpy(), "cutoff": g["cutoff"].to_numpy()})
        res["rfm_orders"] = n.to_numpy()
        res["rfm_x"] = np.where(n > 0, n - 1, np.nan)
        first = pd.DatetimeIndex(g["min"])
        last = pd.DatetimeIndex(g["max"])
        at = pd.Timestamp(cutoff)  # type: ignore[arg-type]
        res["rfm_t_x"] = ((last - first) / DAY).to_numpy()
        res["rfm_T"] = ((at - first) / DAY).to_numpy()
        res["rfm_recency"] = ((at - last) / DAY).to_numpy()
        out.append(res)
    if not out:
        return pd.DataFrame(columns=["customer_id", "cutoff", *RFM_COLUMNS])
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters (r, alpha: purchase-rate gamma; a, b: dropout beta), time unit = days."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_ratio = (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            odds = np.where(x > 0, self.a / (self.b + np.maximum(x, 1) - 1) * np.exp(log_ratio), 0.0)
        return 1.0 / (1.0 + odds)

    def p_order_within(self, h: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(at least one order in (T, T+h]) = P(alive) · (1 − E[e^{−λh}]) with λ's gamma posterior.

        Dropout happens only right after a purchase, so an alive customer's next purchase is the first
        Poisson event: no further dropout term.
        """
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        no_event = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + h)))
        return self.p_alive(x, t_x, T) * (1.0 - no_event)


def bgnbd_loglik(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood (FHL 2005, eq. 6), computed in log space for stability."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BGNBD:
    """Maximum likelihood over log-parameters (keeps all four positive without bounds)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    ok = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (t_x <= T)
    x, t_x, T = x[ok], t_x[ok], T[ok]
    if len(x) < 10:
        raise DataError(f"BG/NBD needs order histories of at least 10 customers, got {len(x)}")

    def nll(logp: np.ndarray) -> float:
        val = -np.sum(bgnbd_loglik(np.exp(logp), x, t_x, T)) / len(x)
        return float(val) if np.isfinite(val) else 1e10

    best: OptimizeResult | None = None
    for start in ([0.0, np.log(max(T.mean(), 1.0)), 0.0, 0.0], [-1.0, np.log(30.0), -1.0, 1.0]):
        res = minimize(
            nll,
            x0=np.array(start),
            method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-5, "fatol": 1e-8},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None  # the loop above ran twice
    r, alpha, a, b = np.exp(best.x)
    return BGNBD(float(r), float(alpha), float(a), float(b))


def recency_baseline(train: pd.DataFrame, label: str, apply_to: pd.DataFrame) -> np.ndarray:
    """A logistic fit of the label on log days since the last order: the simplest sensible score."""

    def design(df: pd.DataFrame) -> np.ndarray:
        return np.log1p(df["rfm_recency"].fillna(df["rfm_recency"].max()).to_numpy(dtype=float)).reshape(
            -1, 1
        )

    y = train[label].to_numpy(dtype=float)
    if y.min() == y.max():
        return np.full(len(apply_to), y.mean())
    model = LogisticRegression().fit(design(train), y)
    return model.predict_proba(design(apply_to))[:, 1]


def bgnbd_baseline(
    train: pd.DataFrame,
    apply_to: pd.DataFrame,
    kind: str,
    horizon_days: float,
    max_fit_rows: int = 50_000,
    seed: int = 0,
) -> tuple[np.ndarray, BGNBD]:
    """Fit BG/NBD on the latest training cutoff (one calibration period per customer) and score rows.

    kind "repurchase" gives P(order within h); "churn" gives its complement.
    """
    fit_rows = train[(train["cutoff"] == train["cutoff"].max()) & (train["rfm_orders"] >= 1)]
    if len(fit_rows) > max_fit_rows:
        fit_rows = fit_rows.sample(max_fit_rows, random_state=seed)
    model = fit_bgnbd(*(fit_rows[c].to_numpy(dtype=float) for c in ("rfm_x", "rfm_t_x", "rfm_T")))
    x, t_x, T = (apply_to[c].to_numpy(dtype=float) for c in ("rfm_x", "rfm_t_x", "rfm_T"))
    p = model.p_order_within(horizon_days, x, t_x, T)
    p = np.nan_to_num(p, nan=0.0)
    return (1.0 - p if kind == "churn" else p), model
