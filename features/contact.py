"""Contact history: how much a customer has been messaged, and how they responded (the seeds' channel fatigue).

Offers act on fatigue: a policy blind to the messages a customer already received sends one message too many.
The family is computed from the `messages` table (every send: the shop's newsletter, rebuy's own, imported
campaigns), the engagement events (`email_open`, `email_click`, `push_open`) and the consent updates
(unsubscribes), in the same DuckDB-SQL style and with the same conventions as the families of
features.compute (point in time: rows with timestamp <= the cutoff; counts 0, undefined ratios NaN):

- `messages_<w>`, `messages_<channel>_<w>`, `offers_<w>`: sends in the last 7/30/90 days, all channels /
  per channel / only those carrying an offer (any source);
- `last_message_at`: the last send, an instant; `days_since_message` is computed at request time from it
  (like `days_since_last_order`, so an online value is never a day stale);
- `open_rate_last_n`, `click_rate_last_n`: over the customer's last `last_n` messages, the share opened
  (an `email_open`/`push_open` on the message's channel after it was sent, before the next message on
  that channel, within `response_days` and by the cutoff) and clicked (`email_click`, e-mail only); NaN
  when none of them could be opened (sms) or clicked, or when the shop has no events;
- `unsubscribes_90d`, `unsubscribes_total`: consent withdrawals on any channel;
- `redemptions_<offer>`: messages carrying that offer followed by an order within `redeem_days` (and by the
  cutoff); `redemption_rate` = all redemptions / all offers received (NaN with no offer received).

With no messages table at all (a shop that does not export sends) every feature is NaN: missing, not zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.sqlbase import (
    DAY_NS,
    ET,
    _all_missing,
    _assemble,
    _codes,
    _Inputs,
    _ns,
    _query,
    _require,
    pairs_frame,
)
from rebuy.contract import OFFERS

if TYPE_CHECKING:
    import duckdb

    from features.engine import SqlEngine

CONTACT_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
CONTACT_WINDOWS: tuple[int, ...] = (7, 30, 90)
CONTACT_OFFERS: tuple[str, ...] = tuple(o for o in OFFERS if o != "none")
LAST_N = 10  # messages the open/click rates look back over
RESPONSE_DAYS = 7  # an open/click later than this after a send is not that message's
REDEEM_DAYS = 14  # an order this soon after an offer redeems it (offers.attribution_days' default)

CONTACT: tuple[str, ...] = (
    *(f"messages_{w}d" for w in CONTACT_WINDOWS),
    *(f"messages_{ch}_{w}d" for ch in CONTACT_CHANNELS for w in CONTACT_WINDOWS),
    *(f"offers_{w}d" for w in CONTACT_WINDOWS),
    "last_message_at",
    "open_rate_last_n",
    "click_rate_last_n",
    "unsubscribes_90d",
    "unsubscribes_total",
    *(f"redemptions_{o}" for o in CONTACT_OFFERS),
    "redemption_rate",
)
# request-time feature -> (instant, divisor), merged into features.compute.REQUEST_TIME
REQUEST_TIME_CONTACT: dict[str, tuple[str, str | None]] = {"days_since_message": ("last_message_at", None)}
MESSAGE_COLUMNS: tuple[str, ...] = ("message_id", "customer_id", "sent_at", "channel", "source")


def _messages_sql(messages: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    """Messages as integers: customer position, send time (ns), channel code, offer code (-1: no offer)."""

    _require(messages, "messages", MESSAGE_COLUMNS)
    codes, keep = _codes(messages["customer_id"], ids)
    channel = pd.Categorical(messages["channel"].to_numpy(dtype=object)[keep], categories=CONTACT_CHANNELS)
    offer_col = messages["offer"] if "offer" in messages else pd.Series([None] * len(messages))
    offer = pd.Categorical(offer_col.to_numpy(dtype=object)[keep], categories=CONTACT_OFFERS)
    return pd.DataFrame(
        {
            "customer_id": codes[keep],
            "t": _ns(messages["sent_at"])[keep],
            "ch": channel.codes.astype(np.int16),
            "offer": offer.codes.astype(np.int16),
        }
    )


def _unsubscribes_sql(updates: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:

    withdrawn = updates.loc[~updates["consent"].astype(bool)]
    codes, keep = _codes(withdrawn["customer_id"], ids)
    return pd.DataFrame({"customer_id": codes[keep], "t": _ns(withdrawn["changed_at"])[keep]})


def contact_features(
    messages: pd.DataFrame | None,
    events: pd.DataFrame | None,
    orders: pd.DataFrame,
    consent_updates: pd.DataFrame | None,
    cutoffs: pd.DataFrame,
    *,
    last_n: int = LAST_N,
    response_days: int = RESPONSE_DAYS,
    redeem_days: int = REDEEM_DAYS,
    con: duckdb.DuckDBPyConnection | SqlEngine | None = None,
) -> pd.DataFrame:
    """The contact family for the given (customer_id, cutoff) pairs, from the canonical tables."""

    pairs = pairs_frame(cutoffs)
    inp = _Inputs.build(pairs, orders=orders, events=events)
    return contact_family(
        inp,
        con,
        messages,
        consent_updates,
        last_n=last_n,
        response_days=response_days,
        redeem_days=redeem_days,
    )


def contact_family(
    inp: _Inputs,
    con: duckdb.DuckDBPyConnection | SqlEngine | None,
    messages: pd.DataFrame | None,
    consent_updates: pd.DataFrame | None,
    *,
    last_n: int = LAST_N,
    response_days: int = RESPONSE_DAYS,
    redeem_days: int = REDEEM_DAYS,
) -> pd.DataFrame:
    """The family over already-encoded pairs/orders/events (`compute_features` encodes them once for all)."""

    if messages is None:
        return _all_missing(inp.pairs, CONTACT)
    ids = pd.Index(pd.unique(inp.pairs["customer_id"].to_numpy(dtype=object)))
    frames = {k: v for k, v in inp.frames.items() if k in ("pairs", "orders", "events")}
    frames["messages"] = _messages_sql(messages, ids)
    updates = consent_updates if consent_updates is not None and len(consent_updates) else None
    frames["unsubs"] = (
        _unsubscribes_sql(updates, ids)
        if updates is not None
        else pd.DataFrame({"customer_id": np.zeros(0, np.int64), "t": np.zeros(0, np.int64)})
    )
    if "orders" not in frames:
        frames["orders"] = pd.DataFrame({"customer_id": np.zeros(0, np.int64), "t": np.zeros(0, np.int64)})
    windows = ",\n            ".join(
        [f"count(m.t) FILTER (WHERE m.t > p.c - {w} * {DAY_NS}) AS messages_{w}d" for w in CONTACT_WINDOWS]
        + [
            f"count(m.t) FILTER (WHERE m.ch = {i} AND m.t > p.c - {w} * {DAY_NS}) AS messages_{ch}_{w}d"
            for i, ch in enumerate(CONTACT_CHANNELS)
            for w in CONTACT_WINDOWS
        ]
        + [
            f"count(m.t) FILTER (WHERE m.offer >= 0 AND m.t > p.c - {w} * {DAY_NS}) AS offers_{w}d"
            for w in CONTACT_WINDOWS
        ]
    )
    redeemed = ",\n            ".join(
        f"count(*) FILTER (WHERE r.offer = {i} AND r.redeemed) AS redemptions_{o}"
        for i, o in enumerate(CONTACT_OFFERS)
    )
    has_events = inp.has_events
    email, push = CONTACT_CHANNELS.index("email"), CONTACT_CHANNELS.index("push")
    resp = int(response_days) * DAY_NS
    # each of the last N messages at the cutoff, with the end of its response window
    rates = (
        f"""
    , lastn AS (
        SELECT p.pid, p.c, m.customer_id, m.t, m.ch,
               least(m.t + {resp}, coalesce(m.next_t, m.t + {resp}), p.c) AS until,
               row_number() OVER (PARTITION BY p.pid ORDER BY m.t DESC, m.ch) AS k
        FROM pairs p JOIN m_next m ON m.customer_id = p.customer_id AND m.t <= p.c
        QUALIFY k <= {int(last_n)}
    ), responded AS (
        SELECT l.pid, l.ch,
            EXISTS (SELECT 1 FROM events e WHERE e.customer_id = l.customer_id AND e.t > l.t AND e.t <= l.until
                    AND ((l.ch = {email} AND e.event_type = {ET["email_open"]})
                         OR (l.ch = {push} AND e.event_type = {ET["push_open"]}))) AS opened,
            EXISTS (SELECT 1 FROM events e WHERE e.customer_id = l.customer_id AND e.t > l.t AND e.t <= l.until
                    AND l.ch = {email} AND e.event_type = {ET["email_click"]}) AS clicked
        FROM lastn l
    ), rates AS (
        SELECT pid,
            avg(opened::DOUBLE) FILTER (WHERE ch IN ({email}, {push})) AS open_rate_last_n,
            avg(clicked::DOUBLE) FILTER (WHERE ch = {email}) AS click_rate_last_n
        FROM responded GROUP BY pid
    )"""
        if has_events
        else """
    , rates AS (SELECT pid, NULL::DOUBLE AS open_rate_last_n, NULL::DOUBLE AS click_rate_last_n FROM pairs)"""
    )
    sql = f"""
    WITH m_next AS (
        SELECT customer_id, t, ch, offer,
               lead(t) OVER (PARTITION BY customer_id, ch ORDER BY t) AS next_t
        FROM messages
    ), counts AS (
        SELECT p.pid,
            {windows},
            max(m.t) / 1e9 AS last_message_at
        FROM pairs p LEFT JOIN messages m ON m.customer_id = p.customer_id AND m.t <= p.c
        GROUP BY p.pid
    ), red AS (
        SELECT p.pid, m.offer,
            EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = m.customer_id AND o.t > m.t
                    AND o.t <= least(m.t + {int(redeem_days)} * {DAY_NS}, p.c)) AS redeemed
        FROM pairs p JOIN messages m ON m.customer_id = p.customer_id AND m.t <= p.c AND m.offer >= 0
    ), r AS (
        SELECT p.pid,
            {redeemed},
            CASE WHEN count(r.pid) > 0 THEN avg(r.redeemed::DOUBLE) END AS redemption_rate
        FROM pairs p LEFT JOIN red r USING (pid)
        GROUP BY p.pid
    ), u AS (
        SELECT p.pid,
            count(u.t) FILTER (WHERE u.t > p.c - 90 * {DAY_NS}) AS unsubscribes_90d,
            count(u.t) AS unsubscribes_total
        FROM pairs p LEFT JOIN unsubs u ON u.customer_id = p.customer_id AND u.t <= p.c
        GROUP BY p.pid
    ){rates}
    SELECT counts.*, rates.open_rate_last_n, rates.click_rate_last_n,
        u.unsubscribes_90d, u.unsubscribes_total, {", ".join(f"r.redemptions_{o}" for o in CONTACT_OFFERS)},
        r.redemption_rate
    FROM counts LEFT JOIN rates USING (pid) LEFT JOIN u USING (pid) LEFT JOIN r USING (pid)
    """
    return _assemble(inp.pairs, _query(sql, frames, con), CONTACT)
