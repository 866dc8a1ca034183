"""Pure feature computations: canonical tables in, one row per (customer_id, cutoff) out.

Point-in-time rule: the features at cutoff t use rows with timestamp <= t (inclusive) and never a
later row, so the same function serves training (many past cutoffs) and serving (one cutoff = now).
The heavy lifting is SQL run by an in-process DuckDB connection over the given DataFrames: it is
vectorised, multi-threaded and joins each (customer, cutoff) pair only with that customer's rows up
to the cutoff. Nothing is read from or written to disk here.

Conventions, shared by every family:
- counts and sums over windows are 0 when the customer had no such rows; ratios and gap statistics
  that are undefined (no orders, a single order) are NaN, never 0;
- window "last N days" means (cutoff - N days, cutoff];
- instants (`last_order_at`, ...) are float64 seconds since the Unix epoch, because the online
  store keeps them as plain numbers; the days since them are computed at request time
  (`request_time_features`), so an online value is never a day stale;
- with no events at all (an orders-only shop) every event feature is NaN: missing, not zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from features.contact import CONTACT, REQUEST_TIME_CONTACT, contact_family
from features.sqlbase import (  # noqa: F401  (re-exported: callers and tests import them from here)
    DAY_NS,
    ET,
    HOUR_NS,
    Cutoffs,
    Runner,
    _all_missing,
    _assemble,
    _codes,
    _Inputs,
    _ns,
    _query,
    _require,
    _utc,
    pairs_frame,
)
from rebuy.contract import ENGAGEMENT_EVENTS, REQUIRED, empty

ORDER_HISTORY: tuple[str, ...] = (
    "orders_total",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "spend_total",
    "spend_30d",
    "spend_90d",
    "spend_365d",
    "avg_order_value",
    "gap_mean_days",
    "gap_std_days",
    "last_order_at",
    "category_breadth",
    "discount_share",
    "tenure_days",
    "is_single_buyer",
)
VIEW_BURSTS: tuple[str, ...] = (
    "views_1h",
    "views_24h",
    "views_7d",
    "max_views_in_burst",
    "max_category_views_7d",
    "bought_category_views_7d",
    "carts_24h",
    "carts_7d",
)
LOOKUPS: tuple[str, ...] = (
    "order_history_views_7d",
    "order_history_views_30d",
    "delivery_checks_7d",
    "delivery_checks_30d",
    "last_order_history_view_at",
    "last_delivery_check_at",
    "intent_components_24h",
    "intent_signal_24h",
)
ENGAGEMENT: tuple[str, ...] = (
    "engagement_rate_recent",
    "engagement_rate_baseline",
    "engagement_drop",
    "engagement_ratio",
    "last_engagement_at",
    "open_rate_trend",
    "click_rate_trend",
)
ACTIVITY: tuple[str, ...] = (
    "engagements_total",
    "engagements_30d",
    "engagements_90d",
    "engagements_since_order",
    "engagement_gap_days",
    "views_total",
    "views_30d",
    "views_90d",
    "views_since_order",
    "view_gap_days",
    "active_days_30d",
    "active_days_total",
    "last_event_at",
)
FAMILIES: dict[str, tuple[str, ...]] = {
    "order_history": ORDER_HISTORY,
    "view_bursts": VIEW_BURSTS,
    "lookups": LOOKUPS,
    "engagement": ENGAGEMENT,
    "activity": ACTIVITY,
    "contact": CONTACT,  # features.contact (messages, opens/clicks, unsubscribes, redemptions)
}
# request-time feature -> (the instant it is measured from, the stored feature it divides by or None)
REQUEST_TIME: dict[str, tuple[str, str | None]] = {
    "days_since_last_order": ("last_order_at", None),
    "overdue_ratio": ("last_order_at", "gap_mean_days"),
    "days_since_order_history_view": ("last_order_history_view_at", None),
    "days_since_delivery_check": ("last_delivery_check_at", None),
    "days_since_engagement": ("last_engagement_at", None),
    "days_since_event": ("last_event_at", None),
    "engagement_overdue": ("last_engagement_at", "engagement_gap_days"),
    **REQUEST_TIME_CONTACT,
}

INTENT_HOURS = 24  # the seeds' "short window" for burst + lookup + delivery check
BURST_VIEWS = 2  # views of one category inside it that count as a burst


# --- families ---------------------------------------------------------------------------------------


def order_history_features(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    cutoffs: Cutoffs,
    *,
    con: Runner | None = None,
) -> pd.DataFrame:
    """Recency / frequency / monetary history and the customer's own purchase cycle.

    `returned_amount` is deliberately not used: a return is recorded on the order row without the
    time it happened, so using it at a cutoff could leak a return that happened after the cutoff.
    """
    _require(customers, "customers", REQUIRED["customers"])
    ids = customers["customer_id"] if len(customers) else orders["customer_id"]
    pairs = pairs_frame(cutoffs, ids)
    return _order_history(_Inputs.build(pairs, orders=orders, customers=customers), con)


def _order_history(inp: _Inputs, con: Runner | None) -> pd.DataFrame:
    sql = f"""
    WITH o AS (
        SELECT customer_id, t, amount, category, discount,
               t - lag(t) OVER (PARTITION BY customer_id ORDER BY t, seq) AS gap
        FROM orders
    ), agg AS (
        SELECT p.pid, p.c,
            count(o.t) AS orders_total,
            count(o.t) FILTER (WHERE o.t > p.c - 30 * {DAY_NS}) AS orders_30d,
            count(o.t) FILTER (WHERE o.t > p.c - 90 * {DAY_NS}) AS orders_90d,
            count(o.t) FILTER (WHERE o.t > p.c - 365 * {DAY_NS}) AS orders_365d,
            coalesce(sum(o.amount), 0) AS spend_total,
            coalesce(sum(o.amount) FILTER (WHERE o.t > p.c - 30 * {DAY_NS}), 0) AS spend_30d,
            coalesce(sum(o.amount) FILTER (WHERE o.t > p.c - 90 * {DAY_NS}), 0) AS spend_90d,
            coalesce(sum(o.amount) FILTER (WHERE o.t > p.c - 365 * {DAY_NS}), 0) AS spend_365d,
            avg(o.amount) AS avg_order_value,
            avg(o.gap::DOUBLE) / {DAY_NS} AS gap_mean_days,
            stddev_samp(o.gap::DOUBLE) / {DAY_NS} AS gap_std_days,
            max(o.t) / 1e9 AS last_order_at,
            count(DISTINCT o.category) AS category_breadth,
            avg(CASE WHEN o.t IS NULL THEN NULL WHEN o.discount > 0 THEN 1.0 ELSE 0.0 END) AS discount_share
        FROM pairs p LEFT JOIN o ON o.customer_id = p.customer_id AND o.t <= p.c
        GROUP BY p.pid, p.c
    )
    SELECT agg.*,
        (agg.c - cust.signup)::DOUBLE / {DAY_NS} AS tenure_days,
        CASE WHEN agg.orders_total = 1 THEN 1.0 ELSE 0.0 END AS is_single_buyer
    FROM agg JOIN pairs p USING (pid) LEFT JOIN customers cust ON cust.customer_id = p.customer_id
    """
    return _assemble(inp.pairs, _query(sql, inp.frames, con), ORDER_HISTORY)


def view_burst_features(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    cutoffs: Cutoffs,
    *,
    burst_minutes: int = 60,
    con: Runner | None = None,
) -> pd.DataFrame:
    """Browsing intensity right before the cutoff: the seeds' purchase intent shows up as view bursts."""
    ids = pd.concat([events["customer_id"], orders["customer_id"]]) if len(events) else orders["customer_id"]
    pairs = pairs_frame(cutoffs, ids)
    return _view_bursts(_Inputs.build(pairs, events=events, orders=orders), con, burst_minutes)


def _view_bursts(inp: _Inputs, con: Runner | None, burst_minutes: int) -> pd.DataFrame:
    if not inp.has_events:
        return _all_missing(inp.pairs, VIEW_BURSTS)
    burst_ns = int(burst_minutes) * 60 * 10**9
    sql = f"""
    WITH v AS (
        SELECT customer_id, t, category,
               count(*) OVER (PARTITION BY customer_id ORDER BY t
                              RANGE BETWEEN {burst_ns} PRECEDING AND CURRENT ROW) AS in_burst
        FROM events WHERE event_type = {ET["view"]}
    ), bought AS (
        SELECT customer_id, category, min(t) AS first_t FROM orders
        WHERE category IS NOT NULL GROUP BY customer_id, category
    ), base AS (
        SELECT p.pid,
            count(v.t) FILTER (WHERE v.t > p.c - {HOUR_NS}) AS views_1h,
            count(v.t) FILTER (WHERE v.t > p.c - {DAY_NS}) AS views_24h,
            count(v.t) FILTER (WHERE v.t > p.c - 7 * {DAY_NS}) AS views_7d,
            coalesce(max(v.in_burst), 0) AS max_views_in_burst
        FROM pairs p LEFT JOIN v ON v.customer_id = p.customer_id AND v.t <= p.c
        GROUP BY p.pid
    ), cat AS (
        SELECT pid, max(n) AS max_category_views_7d FROM (
            SELECT p.pid, v.category, count(*) AS n
            FROM pairs p JOIN v ON v.customer_id = p.customer_id AND v.t <= p.c AND v.t > p.c - 7 * {DAY_NS}
            WHERE v.category IS NOT NULL GROUP BY p.pid, v.category
        ) GROUP BY pid
    ), seen AS (
        SELECT p.pid, count(*) AS bought_category_views_7d
        FROM pairs p
        JOIN v ON v.customer_id = p.customer_id AND v.t <= p.c AND v.t > p.c - 7 * {DAY_NS}
        JOIN bought b ON b.customer_id = p.customer_id AND b.category = v.category AND b.first_t <= p.c
        GROUP BY p.pid
    ), carts AS (
        SELECT p.pid,
            count(*) FILTER (WHERE e.t > p.c - {DAY_NS}) AS carts_24h,
            count(*) AS carts_7d
        FROM pairs p JOIN events e ON e.customer_id = p.customer_id AND e.event_type = {ET["cart"]}
            AND e.t <= p.c AND e.t > p.c - 7 * {DAY_NS}
        GROUP BY p.pid
    )
    SELECT base.*,
        coalesce(cat.max_category_views_7d, 0) AS max_category_views_7d,
        coalesce(seen.bought_category_views_7d, 0) AS bought_category_views_7d,
        coalesce(carts.carts_24h, 0) AS carts_24h,
        coalesce(carts.carts_7d, 0) AS carts_7d
    FROM base LEFT JOIN cat USING (pid) LEFT JOIN seen USING (pid) LEFT JOIN carts USING (pid)
    """
    return _assemble(inp.pairs, _query(sql, inp.frames, con), VIEW_BURSTS)


def lookup_features(
    events: pd.DataFrame,
    cutoffs: Cutoffs,
    *,
    intent_hours: int = INTENT_HOURS,
    burst_views: int = BURST_VIEWS,
    con: Runner | None = None,
) -> pd.DataFrame:
    """Looking up one's own orders and delivery options: with a view burst, the strongest repurchase signal.

    `intent_components_24h` counts which of the three signals occurred in the last `intent_hours`:
    at least `burst_views` views of one category, an order_history_view, a delivery_check;
    `intent_signal_24h` is 1 when all three did.
    """
    pairs = pairs_frame(cutoffs, events["customer_id"])
    return _lookups(_Inputs.build(pairs, events=events), con, intent_hours, burst_views)


def _lookups(inp: _Inputs, con: Runner | None, intent_hours: int, burst_views: int) -> pd.DataFrame:
    if not inp.has_events:
        return _all_missing(inp.pairs, LOOKUPS)
    win = int(intent_hours) * HOUR_NS
    sql = f"""
    WITH e AS (
        SELECT * FROM events WHERE event_type IN ({ET["order_history_view"]}, {ET["delivery_check"]}, {ET["view"]})
    ), base AS (
        SELECT p.pid,
            count(*) FILTER (WHERE e.event_type = {ET["order_history_view"]} AND e.t > p.c - 7 * {DAY_NS})
                AS order_history_views_7d,
            count(*) FILTER (WHERE e.event_type = {ET["order_history_view"]} AND e.t > p.c - 30 * {DAY_NS})
                AS order_history_views_30d,
            count(*) FILTER (WHERE e.event_type = {ET["delivery_check"]} AND e.t > p.c - 7 * {DAY_NS})
                AS delivery_checks_7d,
            count(*) FILTER (WHERE e.event_type = {ET["delivery_check"]} AND e.t > p.c - 30 * {DAY_NS})
                AS delivery_checks_30d,
            max(e.t) FILTER (WHERE e.event_type = {ET["order_history_view"]}) / 1e9 AS last_order_history_view_at,
            max(e.t) FILTER (WHERE e.event_type = {ET["delivery_check"]}) / 1e9 AS last_delivery_check_at,
            count(*) FILTER (WHERE e.event_type = {ET["order_history_view"]} AND e.t > p.c - {win}) > 0 AS has_ohv,
            count(*) FILTER (WHERE e.event_type = {ET["delivery_check"]} AND e.t > p.c - {win}) > 0 AS has_dc
        FROM pairs p LEFT JOIN e ON e.customer_id = p.customer_id AND e.t <= p.c
        GROUP BY p.pid
    ), burst AS (
        SELECT pid, max(n) >= {int(burst_views)} AS has_burst FROM (
            SELECT p.pid, v.category, count(*) AS n
            FROM pairs p JOIN e v ON v.customer_id = p.customer_id AND v.event_type = {ET["view"]}
                AND v.t <= p.c AND v.t > p.c - {win}
            WHERE v.category IS NOT NULL GROUP BY p.pid, v.category
        ) GROUP BY pid
    )
    SELECT base.*,
        (coalesce(burst.has_burst, false)::INT + base.has_ohv::INT + base.has_dc::INT) AS intent_components_24h,
        CASE WHEN coalesce(burst.has_burst, false) AND base.has_ohv AND base.has_dc THEN 1.0 ELSE 0.0 END
            AS intent_signal_24h
    FROM base LEFT JOIN burst USING (pid)
    """
    return _assemble(inp.pairs, _query(sql, inp.frames, con), LOOKUPS)


def engagement_features(
    events: pd.DataFrame,
    cutoffs: Cutoffs,
    *,
    recent_days: int = 14,
    baseline_days: int = 56,
    con: Runner | None = None,
) -> pd.DataFrame:
    """Engagement fading against the customer's own baseline: it fades before a customer churns.

    Rates are events per day in the recent window (cutoff - recent_days, cutoff] and in the
    baseline window before it; `engagement_ratio` is NaN when the baseline is empty (no baseline to
    compare with), `engagement_drop` = baseline rate - recent rate is always defined.
    """
    pairs = pairs_frame(cutoffs, events["customer_id"])
    return _engagement(_Inputs.build(pairs, events=events), con, recent_days, baseline_days)


def _engagement(inp: _Inputs, con: Runner | None, recent_days: int, baseline_days: int) -> pd.DataFrame:
    if not inp.has_events:
        return _all_missing(inp.pairs, ENGAGEMENT)
    r, b = int(recent_days), int(baseline_days)
    kinds = ", ".join(str(ET[k]) for k in ENGAGEMENT_EVENTS)
    recent = f"e.t > p.c - {r} * {DAY_NS}"
    sql = f"""
    WITH e AS (SELECT * FROM events WHERE event_type IN ({kinds})),
    agg AS (
        SELECT p.pid,
            count(*) FILTER (WHERE {recent}) / {r}::DOUBLE AS engagement_rate_recent,
            count(*) FILTER (WHERE NOT ({recent})) / {b}::DOUBLE AS engagement_rate_baseline,
            count(*) FILTER (WHERE {recent} AND e.event_type = {ET["email_open"]}) / {r}::DOUBLE AS open_r,
            count(*) FILTER (WHERE NOT ({recent}) AND e.event_type = {ET["email_open"]}) / {b}::DOUBLE AS open_b,
            count(*) FILTER (WHERE {recent} AND e.event_type = {ET["email_click"]}) / {r}::DOUBLE AS click_r,
            count(*) FILTER (WHERE NOT ({recent}) AND e.event_type = {ET["email_click"]}) / {b}::DOUBLE AS click_b
        FROM pairs p LEFT JOIN e ON e.customer_id = p.customer_id AND e.t <= p.c
            AND e.t > p.c - {r + b} * {DAY_NS}
        GROUP BY p.pid
    ), last AS (
        SELECT p.pid, max(e.t) / 1e9 AS last_engagement_at
        FROM pairs p JOIN e ON e.customer_id = p.customer_id AND e.t <= p.c GROUP BY p.pid
    )
    SELECT agg.pid, engagement_rate_recent, engagement_rate_baseline,
        engagement_rate_baseline - engagement_rate_recent AS engagement_drop,
        CASE WHEN engagement_rate_baseline > 0 THEN engagement_rate_recent / engagement_rate_baseline END
            AS engagement_ratio,
        last.last_engagement_at,
        open_r - open_b AS open_rate_trend,
        click_r - click_b AS click_rate_trend
    FROM agg LEFT JOIN last USING (pid)
    """
    return _assemble(inp.pairs, _query(sql, inp.frames, con), ENGAGEMENT)


def activity_features(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    cutoffs: Cutoffs,
    *,
    con: Runner | None = None,
) -> pd.DataFrame:
    """Lifetime activity against silence since the last order: is the customer still there?

    Customers who are still "alive" keep opening emails, using the app and browsing at their own pace;
    those who have quietly left fade out, mostly right after their last order. A churn model can only
    tell the two apart by comparing the recent silence with the customer's own lifetime rhythm, which is
    what these features expose: lifetime and recent counts, counts since the last order, the customer's
    own mean days between engagements (`engagement_gap_days` = tenure / engagements, NaN without any)
    and distinct active days. Views and engagements are the event types of `view` and
    `rebuy.contract.ENGAGEMENT_EVENTS`; "since order" counts events after the last order at the cutoff
    (all events when there is no order yet).
    """
    _require(customers, "customers", REQUIRED["customers"])
    pairs = pairs_frame(cutoffs, customers["customer_id"])
    return _activity(_Inputs.build(pairs, events=events, orders=orders, customers=customers), con)


def _activity(inp: _Inputs, con: Runner | None) -> pd.DataFrame:
    if not inp.has_events:
        return _all_missing(inp.pairs, ACTIVITY)
    kinds = ", ".join(str(ET[k]) for k in ENGAGEMENT_EVENTS)
    view = ET["view"]
    since = "e.t > coalesce(lo.last_o, -1)"
    sql = f"""
    WITH lo AS (
        SELECT p.pid, max(o.t) AS last_o
        FROM pairs p LEFT JOIN orders o ON o.customer_id = p.customer_id AND o.t <= p.c
        GROUP BY p.pid
    ), agg AS (
        SELECT p.pid, p.c,
            count(e.t) FILTER (WHERE e.event_type IN ({kinds})) AS engagements_total,
            count(e.t) FILTER (WHERE e.event_type IN ({kinds}) AND e.t > p.c - 30 * {DAY_NS}) AS engagements_30d,
            count(e.t) FILTER (WHERE e.event_type IN ({kinds}) AND e.t > p.c - 90 * {DAY_NS}) AS engagements_90d,
            count(e.t) FILTER (WHERE e.event_type IN ({kinds}) AND {since}) AS engagements_since_order,
            count(e.t) FILTER (WHERE e.event_type = {view}) AS views_total,
            count(e.t) FILTER (WHERE e.event_type = {view} AND e.t > p.c - 30 * {DAY_NS}) AS views_30d,
            count(e.t) FILTER (WHERE e.event_type = {view} AND e.t > p.c - 90 * {DAY_NS}) AS views_90d,
            count(e.t) FILTER (WHERE e.event_type = {view} AND {since}) AS views_since_order,
            count(DISTINCT e.t // {DAY_NS}) FILTER (WHERE e.t > p.c - 30 * {DAY_NS}) AS active_days_30d,
            count(DISTINCT e.t // {DAY_NS}) AS active_days_total,
            max(e.t) / 1e9 AS last_event_at
        FROM pairs p JOIN lo USING (pid)
            LEFT JOIN events e ON e.customer_id = p.customer_id AND e.t <= p.c
        GROUP BY p.pid, p.c
    )
    SELECT agg.*,
        CASE WHEN agg.engagements_total > 0
            THEN greatest((agg.c - cust.signup)::DOUBLE / {DAY_NS}, 1.0) / agg.engagements_total END
            AS engagement_gap_days,
        CASE WHEN agg.views_total > 0
            THEN greatest((agg.c - cust.signup)::DOUBLE / {DAY_NS}, 1.0) / agg.views_total END AS view_gap_days
    FROM agg JOIN pairs p USING (pid) LEFT JOIN customers cust ON cust.customer_id = p.customer_id
    """
    return _assemble(inp.pairs, _query(sql, inp.frames, con), ACTIVITY)


# --- all families, request-time features --------------------------------------------------------------


def customer_pairs(customers: pd.DataFrame, cutoffs: Sequence[pd.Timestamp]) -> pd.DataFrame:
    """Every customer who had signed up by each cutoff (a customer cannot have features before existing)."""
    grid = pairs_frame(cutoffs, customers["customer_id"])
    signup = pd.Series(_ns(customers["signup_at"]), index=customers["customer_id"].astype(str).to_numpy())
    ok = signup.reindex(grid["customer_id"].astype(str)).to_numpy() <= _ns(grid["cutoff"])
    return grid.loc[ok].reset_index(drop=True)


def compute_features(
    tables: dict[str, pd.DataFrame],
    cutoffs: Cutoffs,
    *,
    burst_minutes: int = 60,
    recent_days: int = 14,
    baseline_days: int = 56,
    con: Runner | None = None,
) -> pd.DataFrame:
    """All families joined: one row per (customer_id, cutoff) in the order of the pairs.

    A list of cutoffs means every customer signed up by that cutoff; a frame gives the pairs.
    """
    customers, orders = tables["customers"], tables["orders"]
    events = tables.get("events")
    if events is None:
        events = empty("events")
    pairs = cutoffs if isinstance(cutoffs, pd.DataFrame) else customer_pairs(customers, list(cutoffs))
    pairs = pairs_frame(pairs)
    own = con is None
    con = duckdb.connect(":memory:") if con is None else con
    _require(customers, "customers", REQUIRED["customers"])
    inp = _Inputs.build(pairs, orders=orders, customers=customers, events=events)  # encoded once for all
    try:
        out = _order_history(inp, con)
        families = [
            _view_bursts(inp, con, burst_minutes),
            _lookups(inp, con, INTENT_HOURS, BURST_VIEWS),
            _engagement(inp, con, recent_days, baseline_days),
            _activity(inp, con),
            contact_family(inp, con, tables.get("messages"), tables.get("consent_updates")),
        ]
    finally:
        if own and isinstance(con, duckdb.DuckDBPyConnection):
            con.close()
    for fam in families:
        for col in fam.columns[2:]:
            out[col] = fam[col].to_numpy()
    return out


def request_time_features(
    stored: pd.DataFrame | dict, now: pd.Series | np.ndarray | float
) -> dict[str, np.ndarray]:
    """Days since each stored instant at request time `now` (epoch seconds), and how overdue the customer is.

    One function for the on-demand feature view, the fast online reader and tests, so training and
    serving compute these identically. Missing instants give NaN; `overdue_ratio` is NaN without a
    mean gap (fewer than two orders).
    """
    now_s = np.asarray(now, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for name, (instant, divisor) in REQUEST_TIME.items():
        days = (now_s - np.asarray(stored[instant], dtype=np.float64)) / 86_400.0
        if divisor is None:
            out[name] = days
        else:
            gap = np.asarray(stored[divisor], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name] = np.where(gap > 0, days / gap, np.nan)
    return out


def epoch_seconds(ts: pd.Series | pd.Timestamp) -> np.ndarray | float:
    """Seconds since the epoch of a UTC timestamp (scalar or column), as the request field carries it."""
    if isinstance(ts, pd.Timestamp):
        return _utc(ts).value / 1e9
    return _ns(ts) / 1e9
