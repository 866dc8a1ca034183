"""Which customers a pass considers, why, and with which candidate offers (pure).

Each trigger in `cfg.policy.triggers` yields candidates `(customer_id, trigger, campaign, channel,
offers, episode)`. The **episode** names the occurrence that fired the trigger (the first order,
the browse session, the inactivity spell since the last order, the birthday year, the holiday),
so the decision id `(customer, campaign, episode)` is the same on every pass that sees the same
occurrence: a customer inactive for 40 days gets one wake-up, not ten.

One decision per customer per run: when several triggers fire, the one listed **first in the config**
wins (the default order puts event-driven moments before audiences: first purchase, browse without
buy, inactive, birthday, holiday eve, churn risk, cycle due). Windows are UTC instants; as_of is
inclusive, later rows are ignored (point in time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.clock import local_clock
from rebuy.config import Config, HolidayConfig, PolicyConfig, TriggerConfig

CANDIDATE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "trigger",
    "kind",
    "campaign",
    "channel",
    "offers",
    "episode",
    "priority",
)
BROWSE_EVENTS: tuple[str, ...] = ("view", "cart")
AUDIENCE_KINDS: frozenset[str] = frozenset({"churn_risk", "cycle_due"})


def decision_id(customer_id: str, campaign: str, episode: str) -> str:
    """Deterministic id of one decision: reruns of a pass produce the same ids, hence no duplicates."""
    return hashlib.sha256(f"{customer_id}\x1f{campaign}\x1f{episode}".encode()).hexdigest()[:32]


def order_summary(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """first/last order time and order count per customer, from orders up to `as_of`."""
    past = orders.loc[orders["ordered_at"] <= as_of]
    g = past.groupby("customer_id", sort=True)["ordered_at"]
    return pd.DataFrame({"first_order_at": g.min(), "last_order_at": g.max(), "n_orders": g.size()})


def _frame(ids: pd.Series, trig: TriggerConfig, episode: pd.Series, priority: int) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(dtype=object),
            "trigger": [trig.name] * n,
            "kind": [trig.kind] * n,
            "campaign": [trig.campaign] * n,
            "channel": [trig.channel] * n,
            "offers": [tuple(trig.offers)] * n,
            "episode": episode.to_numpy(dtype=object),
            "priority": [priority] * n,
        }
    )


def _day(ts: pd.Series) -> pd.Series:
    """The date as YYYY-MM-DD in the series' own zone (UTC for canonical tables); NaT stays missing.
    numpy's day-unit text conversion gives the same text as `strftime("%Y-%m-%d")` at a fraction of its
    cost (it runs on every buyer each pass)."""
    days = ts.dt.tz_localize(None) if ts.dt.tz is not None else ts
    text = days.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(str).astype(object)
    text[ts.isna().to_numpy()] = np.nan
    return pd.Series(text, index=ts.index)


def _next_one(today: pd.Timestamp, month: int, day: int) -> pd.Timestamp:
    """The next occurrence of month/day on or after `today`; 29 Feb falls on 28 Feb in other years."""
    cand = _safe_date(today.year, month, day)
    return cand if cand >= today else _safe_date(today.year + 1, month, day)


def _next_date(local_dates: pd.Series, month: int, day: int) -> pd.Series:
    """`_next_one` per row, computed once per distinct date (a pass sees only a few local dates)."""
    codes, uniq = pd.factorize(local_dates)
    nxt = np.array(
        [np.datetime64(_next_one(pd.Timestamp(d), month, day), "ns") for d in uniq], dtype="datetime64[ns]"
    )
    return pd.Series(nxt[codes] if len(codes) else nxt[:0], index=local_dates.index)


def _next_dates(today: pd.Series, month: np.ndarray, day: np.ndarray) -> pd.Series:
    """`_next_one` per row with its own month/day, vectorised (birthdays: one per customer)."""

    def on(year: np.ndarray) -> pd.Series:
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        d = np.where((month == 2) & (day == 29) & ~leap, 28, day)
        return pd.Series(
            pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": d})).to_numpy(),
            index=today.index,
        )

    if not len(today):
        return pd.Series(np.array([], dtype="datetime64[ns]"), index=today.index)
    year = today.dt.year.to_numpy()
    this = on(year)
    return this.where(this >= today, on(year + 1))


def _safe_date(year: int, month: int, day: int) -> pd.Timestamp:
    if month == 2 and day == 29 and not pd.Timestamp(year=year, month=1, day=1).is_leap_year:
        day = 28
    return pd.Timestamp(year=year, month=month, day=day)


def rule_candidates(
    trig: TriggerConfig,
    priority: int,
    as_of: pd.Timestamp,
    tables: dict[str, pd.DataFrame],
    summary: pd.DataFrame,
    holidays: Sequence[HolidayConfig] | None = None,
) -> pd.DataFrame:
    """Candidates of one rule trigger (everything but the model audiences); `holidays` is the shop's
    calendar (`cfg.policy.holidays`; None: the embedded default)."""
    days = trig.days if trig.days is not None else 1
    window = pd.Timedelta(days=days)
    customers = tables["customers"]
    if trig.kind == "first_purchase":
        hit = summary.loc[(summary["first_order_at"] > as_of - window)]
        return _frame(hit.index.to_series(), trig, "first:" + _day(hit["first_order_at"]), priority)
    if trig.kind == "inactive":
        hit = summary.loc[summary["last_order_at"] <= as_of - window]
        return _frame(hit.index.to_series(), trig, "inactive:" + _day(hit["last_order_at"]), priority)
    if trig.kind == "browse_no_buy":
        ev = tables["events"]
        ev = ev.loc[ev["event_type"].isin(BROWSE_EVENTS) & (ev["occurred_at"] <= as_of)]
        last_browse = ev.groupby("customer_id", sort=True)["occurred_at"].max()
        # browsed, then `days` passed without a new browse or an order; looked back one window wide
        browsed = last_browse.loc[(last_browse <= as_of - window) & (last_browse > as_of - 2 * window)]
        last_order = summary["last_order_at"].reindex(browsed.index)
        browsed = browsed.loc[~(last_order >= browsed)]
        return _frame(browsed.index.to_series(), trig, "browse:" + _day(browsed), priority)
    if trig.kind in ("birthday", "holiday_eve"):
        clock = local_clock(as_of, customers).set_index("customer_id")["local_date"]
        if trig.kind == "birthday":
            bday = pd.to_datetime(customers.set_index("customer_id")["birthday"], errors="coerce").dropna()
            today = clock.reindex(bday.index)
            nxt = _next_dates(today, bday.dt.month.to_numpy(), bday.dt.day.to_numpy())
            due = nxt.loc[(nxt - today) < window]
            return _frame(due.index.to_series(), trig, "birthday:" + due.dt.strftime("%Y"), priority)
        buyers = clock.reindex(summary.index)
        parts = []
        calendar = PolicyConfig().holidays if holidays is None else holidays
        for h in calendar:
            if h.date is not None:  # a dated (moving) holiday: only that day
                nxt = pd.Series(np.datetime64(h.date, "ns"), index=buyers.index, dtype="datetime64[ns]")
            else:
                nxt = _next_date(buyers, int(h.month or 1), int(h.day or 1))
            # the eve: the holiday is 1..days local days ahead
            ahead = (nxt - buyers).dt.days
            eve = nxt.loc[(ahead >= 1) & (ahead <= days)]
            parts.append(
                _frame(eve.index.to_series(), trig, f"holiday:{h.name}:" + eve.dt.strftime("%Y"), priority)
            )
        if not parts:
            return _frame(pd.Series([], dtype=object), trig, pd.Series([], dtype=object), priority)
        return pd.concat(parts, ignore_index=True).drop_duplicates("customer_id")
    raise ValueError(f"trigger {trig.name!r}: kind {trig.kind!r} is an audience, not a rule")


def audience_candidates(
    trig: TriggerConfig, priority: int, scores: pd.DataFrame, summary: pd.DataFrame
) -> pd.DataFrame:
    """Model audiences, for customers with at least one order: churn risk above a threshold, or
    purchase cycle due within `days` days. Episode = the spell since the last order."""
    s = scores.set_index("customer_id")
    s = s.loc[s.index.isin(summary.index)]
    if trig.kind == "churn_risk":
        threshold = trig.threshold if trig.threshold is not None else 0.6
        hit = s.index[s["churn_probability"] >= threshold]
        label = "churn"
    elif trig.kind == "cycle_due":
        days = trig.days if trig.days is not None else 3
        hit = s.index[s["expected_days_to_next_order"] <= days]
        label = "cycle"
    else:
        raise ValueError(f"trigger {trig.name!r}: kind {trig.kind!r} is not an audience")
    ids = pd.Series(hit, index=hit)
    return _frame(ids, trig, f"{label}:" + _day(summary.loc[hit, "last_order_at"]), priority)


def select_candidates(
    cfg: Config,
    as_of: pd.Timestamp,
    tables: dict[str, pd.DataFrame],
    scores: pd.DataFrame | None,
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    rules: list[pd.DataFrame] | None = None,
    summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer: the highest-priority trigger that fires for them at `as_of`.

    `scores` (from `score_frame`) feeds the audience triggers; None leaves them out. Customers in
    `exclude` (the forget list) never appear. `rules` and `summary` reuse `all_rule_candidates` and
    `order_summary` already computed for this `as_of`.
    """
    summary = order_summary(tables["orders"], as_of) if summary is None else summary
    known = set(tables["customers"]["customer_id"])
    parts = list(rules) if rules is not None else all_rule_candidates(cfg, as_of, tables, summary)
    if scores is not None and len(scores):
        for priority, trig in enumerate(cfg.policy.triggers):
            if trig.kind in AUDIENCE_KINDS:
                parts.append(audience_candidates(trig, priority, scores, summary))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CANDIDATE_COLUMNS})
    allc = pd.concat(parts, ignore_index=True)
    allc = allc.loc[allc["customer_id"].isin(known) & ~allc["customer_id"].isin(exclude)]
    allc = allc.sort_values(["customer_id", "priority"], kind="stable").drop_duplicates("customer_id")
    allc["episode"] = allc["episode"].astype(str)
    return allc.reset_index(drop=True)[list(CANDIDATE_COLUMNS)]


def all_rule_candidates(
    cfg: Config, as_of: pd.Timestamp, tables: dict[str, pd.DataFrame], summary: pd.DataFrame | None = None
) -> list[pd.DataFrame]:
    """Candidates of every rule trigger (one frame each, priority = position in the config)."""
    summary = order_summary(tables["orders"], as_of) if summary is None else summary
    return [
        rule_candidates(trig, priority, as_of, tables, summary, cfg.policy.holidays)
        for priority, trig in enumerate(cfg.policy.triggers)
        if trig.kind not in AUDIENCE_KINDS
    ]


def audience_pool(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> list[str]:
    """Customers an audience trigger could fire for (at least one order by `as_of`), sorted."""
    past = tables["orders"].loc[tables["orders"]["ordered_at"] <= as_of, "customer_id"]
    return sorted(set(past))
