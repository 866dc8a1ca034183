"""Labels at each (customer_id, cutoff): what happened STRICTLY after the cutoff, up to `as_of`.

Features use rows with timestamp <= cutoff; labels use orders with timestamp > cutoff, so an order
exactly at the cutoff is a feature, never a label. A label whose window has not ended by `as_of`
(the end of the observed data) is NaN, not 0: we do not yet know whether the customer will buy.

Columns (names independent of the horizons, which come from `cfg.horizons`):
- `churn`: 1 when there is no order in (cutoff, cutoff + churn_days]; only defined for customers
  with at least one order at the cutoff (churn presumes a relationship), NaN otherwise;
- `repurchase`: 1 when there is an order in (cutoff, cutoff + repurchase_days];
- `days_to_next_order`: days from the cutoff to the next order, or to `as_of` when none was seen
  (right-censored), with `next_order_observed` = 0 for censored rows (survival-style targets);
- `spend_next`: gross spend in (cutoff, cutoff + value_days].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.compute import DAY_NS, Cutoffs, Runner, _Inputs, _ns, _query, _utc, pairs_frame
from rebuy.config import HorizonsConfig

LABELS: tuple[str, ...] = ("churn", "repurchase", "days_to_next_order", "next_order_observed", "spend_next")


def compute_labels(
    orders: pd.DataFrame,
    cutoffs: Cutoffs,
    horizons: HorizonsConfig,
    as_of: pd.Timestamp,
    *,
    con: Runner | None = None,
) -> pd.DataFrame:
    """One row per (customer_id, cutoff) in the order of the pairs, with the label columns.

    `con`: where the SQL runs (features.compute.Runner; default a private DuckDB connection).
    """
    as_of_ns = _utc(as_of).value
    pairs = pairs_frame(cutoffs, orders["customer_id"])
    h_churn, h_rep, h_val = (
        int(d) * DAY_NS for d in (horizons.churn_days, horizons.repurchase_days, horizons.value_days)
    )
    sql = f"""
    SELECT p.pid,
        count(o.t) FILTER (WHERE o.t <= p.c) AS n_before,
        count(o.t) FILTER (WHERE o.t > p.c AND o.t <= p.c + {h_churn}) AS n_churn_window,
        count(o.t) FILTER (WHERE o.t > p.c AND o.t <= p.c + {h_rep}) AS n_repurchase_window,
        coalesce(sum(o.amount) FILTER (WHERE o.t > p.c AND o.t <= p.c + {h_val}), 0) AS spend_next,
        min(o.t) FILTER (WHERE o.t > p.c) AS next_t
    FROM pairs p LEFT JOIN orders o ON o.customer_id = p.customer_id AND o.t <= {as_of_ns}
    GROUP BY p.pid
    """
    v = _query(sql, _Inputs.build(pairs, orders=orders).frames, con).set_index("pid")
    v = v.reindex(np.arange(len(pairs)))
    c = _ns(pairs["cutoff"])
    matured = {h: c + h <= as_of_ns for h in (h_churn, h_rep, h_val)}
    n_before = v["n_before"].to_numpy(dtype=np.float64)
    next_t = v["next_t"].to_numpy(dtype=np.float64, na_value=np.nan)
    observed = ~np.isnan(next_t)
    out = pairs.copy()
    churned = (v["n_churn_window"].to_numpy() == 0).astype(np.float64)
    out["churn"] = np.where(matured[h_churn] & (n_before >= 1), churned, np.nan)
    bought = (v["n_repurchase_window"].to_numpy() > 0).astype(np.float64)
    out["repurchase"] = np.where(matured[h_rep], bought, np.nan)
    end = np.where(observed, next_t, float(as_of_ns))
    out["days_to_next_order"] = np.where(c <= as_of_ns, (end - c) / DAY_NS, np.nan)
    out["next_order_observed"] = observed.astype(np.float64)
    out["spend_next"] = np.where(matured[h_val], v["spend_next"].to_numpy(dtype=np.float64), np.nan)
    return out
