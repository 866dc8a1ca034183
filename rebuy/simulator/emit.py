"""Turn one simulated day into rows of the canonical tables (orders, events, consent updates, messages).

Only the written history needs this; the oracle steps the same dynamics without emitting rows.
Times of day follow local habits (timezones), wrapped into the same UTC day as the dynamics step,
so a cutoff at midnight UTC splits the tables exactly where the oracle's state is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from rebuy.contract import EVENT_TYPES
from rebuy.simulator.dynamics import DayOut, State
from rebuy.simulator.params import CATEGORIES, SIM_CHANNELS, TIMEZONES, TRACES, Traits

DAY_NS = 86_400 * 10**9

NEWSLETTER_HOUR = 9  # local hour the newsletter goes out (spread over the following half hour)
NEWSLETTER_CAMPAIGN = "newsletter"
EV = {name: i for i, name in enumerate(EVENT_TYPES)}
# local hour-of-day weights of shopping (evening peak)
_HOURS = np.array(
    [
        1,
        0.6,
        0.3,
        0.2,
        0.2,
        0.3,
        0.8,
        1.5,
        2.5,
        3,
        3.5,
        3.8,
        4,
        3.8,
        3.5,
        3.5,
        3.8,
        4.2,
        4.8,
        5.6,
        6.0,
        5.5,
        4.0,
        2.2,
    ]
)
_HOUR_CUM = np.cumsum(_HOURS) / _HOURS.sum()


def tz_offsets_ns(start: pd.Timestamp, ndays: int) -> np.ndarray:
    """(n_timezones, ndays) UTC offset of each zone at noon of each day, in ns (DST-aware)."""
    noon = pd.date_range(start + pd.Timedelta(hours=12), periods=ndays, freq="D")
    out = np.empty((len(TIMEZONES), ndays), np.int64)
    for i, (zone, _, _) in enumerate(TIMEZONES):
        local = noon.tz_convert(zone).tz_localize(None)
        out[i] = (local - noon.tz_localize(None)).to_numpy().astype(np.int64)
    return out


def local_times(u_hour: np.ndarray, u_min: np.ndarray, offset_ns: np.ndarray) -> np.ndarray:
    """Nanoseconds into the UTC day for activity at a realistic local hour (wrapped into the day)."""
    hour = np.searchsorted(_HOUR_CUM, u_hour)
    local = (hour * 3600 + u_min * 3600).astype(np.int64) * 10**9
    return (local - offset_ns) % DAY_NS


@dataclass
class DayRows:
    """Raw columns of one day's new rows (customer indexes, ns since epoch, codes)."""

    orders: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    consents: dict[str, np.ndarray]
    messages: dict[str, np.ndarray]  # the newsletter's sends: cust, t (ns), day
    idle_views: np.ndarray  # customer index of each view outside purchase intent (hidden; not a table)


def emit_day(
    traits: Traits,
    st: State,
    out: DayOut,
    n_before: np.ndarray,
    day: int,
    day_ns: int,
    offsets: np.ndarray,
    rng_orders: np.random.Generator,
    rng_events: np.random.Generator | None,
    signup_tod: np.ndarray,
    ambient_email: bool = True,
) -> DayRows:
    """Rows for day `day` from its outcome `out` (state `st` is already advanced past the day).

    `n_before` is each customer's order count before the day (lookups of past orders need one).
    `ambient_email`: e-mail opens without a send (a shop without a newsletter); with the newsletter on,
    every e-mail open belongs to a send (`newsletter_events`, `message_events`).
    """
    off = offsets[traits.tz]
    lb = np.where(traits.signup_day == day, signup_tod, 0)  # nothing before the signup moment
    # --- orders: time, items, returns (drawn whether or not events are written) ---
    oi = np.flatnonzero(out.ordered)
    ou = rng_orders.random((4, len(oi)))
    t_local = local_times(ou[0], ou[1], off[oi])
    first = out.new[oi]
    t_first = np.minimum(signup_tod[oi] + ((120 + ou[1] * 1500) * 1e9).astype(np.int64), DAY_NS - 1)
    t_order = np.where(first, t_first, np.maximum(t_local, lb[oi]))
    amount = out.amount[oi]
    items = 1 + np.floor(-np.log(np.maximum(ou[2], 1e-12)) * amount / 45.0).astype(np.int64)
    returned = np.where(ou[3] < 0.06, np.round(amount * (0.3 + 0.7 * (ou[3] / 0.06)), 2), 0.0)
    orders = {
        "cust": oi.astype(np.int64),
        "t": day_ns + t_order,
        "amount": amount,
        "discount": out.discount[oi],
        "cat": out.order_cat[oi].astype(np.int64),
        "items": items,
        "returned": returned,
    }
    # --- consent updates ---
    ci, ch = np.nonzero(out.consent_change)
    cu = rng_orders.random((3, len(ci)))
    t_consent = np.maximum(local_times(cu[0], cu[1], off[ci]), lb[ci])
    # --- the newsletter's sends (drawn after everything above, so adding it shifted nothing) ---
    ni = np.flatnonzero(out.newsletter)
    nu = rng_orders.random(len(ni))
    t_send = ((NEWSLETTER_HOUR * 3600 + nu * 1800) * 1e9).astype(np.int64) - off[ni]
    t_send = np.clip(t_send % DAY_NS, 0, DAY_NS - 3_600 * 10**9)  # leaves an hour for opens that day
    # an unsubscribe on a newsletter day follows the send (the link is in it)
    sent_at = np.full(len(st.s), -1, np.int64)
    sent_at[ni] = t_send
    after = (ch == 0) & (sent_at[ci] >= 0) & ~st.consent[ci, 0]
    t_consent = np.where(
        after, np.minimum(sent_at[ci] + (cu[1] * 3_000 * 1e9).astype(np.int64), DAY_NS - 1), t_consent
    )
    consents = {
        "cust": ci.astype(np.int64),
        "channel": ch.astype(np.int64),
        "t": day_ns + t_consent,
        "consent": st.consent[ci, ch],
        # withdrawals mostly through a message's unsubscribe link, opt-ins through the preference centre
        "source": ((~st.consent[ci, ch] & (cu[2] < 0.7)) | after).astype(np.int64),
    }
    messages = {"cust": ni.astype(np.int64), "t": day_ns + t_send, "day": np.full(len(ni), day, np.int64)}
    events = (
        _active_events(
            traits, st, out, n_before, day, day_ns, off, lb, oi, t_order, rng_events, ambient_email
        )
        if (rng_events is not None)
        else {}
    )
    idle = events.pop("idle_views", np.zeros(0, np.int64))
    return DayRows(orders=orders, events=events, consents=consents, messages=messages, idle_views=idle)


def _active_events(
    traits: Traits,
    st: State,
    out: DayOut,
    n_before: np.ndarray,
    day: int,
    day_ns: int,
    off: np.ndarray,
    lb: np.ndarray,
    oi: np.ndarray,
    t_order: np.ndarray,
    rng: np.random.Generator,
    ambient_email: bool = True,
) -> dict[str, np.ndarray]:
    """Events of signed-up customers only: the arrays are compressed to them first (cost ~ active base)."""
    a = np.flatnonzero(st.active)
    sub_tr = SimpleNamespace(
        browse=traits.browse[a], engage=traits.engage[a], app=traits.app[a], cat_pref=traits.cat_pref[a]
    )
    sub_st = SimpleNamespace(
        alive=st.alive[a],
        active=np.ones(len(a), bool),
        intent_cat=st.intent_cat[a],
        s=st.s[a],
        n_orders=st.n_orders[a],
        dead_since=st.dead_since[a],
        consent=st.consent[a],
    )
    sub_out = SimpleNamespace(
        in_intent=out.in_intent[a], ordered=out.ordered[a], intent_first=out.intent_first[a]
    )
    ev = _events(
        sub_tr,
        sub_st,
        sub_out,
        n_before[a],
        day,
        day_ns,
        off[a],
        lb[a],
        np.searchsorted(a, oi),
        t_order,
        rng,
        len(a),
        ambient_email,
    )
    ev["cust"] = a[ev["cust"]]
    ev["idle_views"] = a[ev["idle_views"]]
    return ev


def _events(
    traits: Traits | SimpleNamespace,  # the namespaces: the same fields compressed to active customers
    st: State | SimpleNamespace,
    out: DayOut | SimpleNamespace,
    n_before: np.ndarray,
    day: int,
    day_ns: int,
    off: np.ndarray,
    lb: np.ndarray,
    oi: np.ndarray,
    t_order: np.ndarray,
    rng: np.random.Generator,
    n: int,
    ambient_email: bool = True,
) -> dict[str, np.ndarray]:
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # cust, t, type, cat

    def add(cust: np.ndarray, t: np.ndarray, etype: int | np.ndarray, cat: np.ndarray | int) -> None:
        k = len(cust)
        if k:
            parts.append(
                (
                    cust,
                    np.maximum(t, lb[cust]),
                    np.broadcast_to(np.asarray(etype), (k,)).astype(np.int64),
                    np.broadcast_to(np.asarray(cat), (k,)).astype(np.int64),
                )
            )

    u = rng.random((15, n), dtype=np.float32)
    # --- purchase intent: a session that ends in the order (or in nothing) ---
    ii = np.flatnonzero(out.in_intent | out.ordered)
    t_end = local_times(u[0, ii], u[1, ii], off[ii])
    t_of = np.full(n, -1, np.int64)
    t_of[oi] = t_order
    t_end = np.where(t_of[ii] >= 0, t_of[ii], t_end)
    fresh = out.intent_first[ii]
    lam = np.where(fresh, 3.5, 1.5)
    nviews = rng.poisson(lam) + 1
    vc = np.repeat(ii, nviews)
    vt = np.repeat(t_end, nviews) - (rng.random(len(vc)) * 50 * 60e9).astype(np.int64)
    own = rng.random(len(vc)) < 0.9  # a burst stays on the intended category
    vcat = np.where(own, np.repeat(st.intent_cat[ii], nviews), rng.integers(0, len(CATEGORIES), len(vc)))
    add(vc, np.maximum(vt, 0), EV["view"], vcat)
    repeat_buyer = n_before[ii] > 0
    lookup = ii[(u[2, ii] < np.where(repeat_buyer, 0.45, 0.05))]
    add(
        lookup,
        np.maximum(t_of_or(t_end, ii, lookup) - (u[3, lookup] * 30 * 60e9).astype(np.int64), 0),
        EV["order_history_view"],
        -1,
    )
    dcheck = ii[u[4, ii] < 0.4]
    add(
        dcheck,
        np.maximum(t_of_or(t_end, ii, dcheck) - (u[5, dcheck] * 20 * 60e9).astype(np.int64), 0),
        EV["delivery_check"],
        -1,
    )
    cart = ii[u[6, ii] < np.where(out.ordered[ii], 0.8, 0.3)]
    add(
        cart,
        np.maximum(t_of_or(t_end, ii, cart) - (u[7, cart] * 10 * 60e9).astype(np.int64), 0),
        EV["cart"],
        st.intent_cat[cart],
    )
    # --- aimless browsing, and checking on an order already placed (noise around the signals) ---
    idle = st.active & ~out.in_intent & ~out.ordered
    fade = np.where(st.alive, 1.0, 0.35)
    bi = np.flatnonzero(idle & (u[8] < traits.browse * fade))
    nb = rng.poisson(0.7, len(bi)) + 1
    bc = np.repeat(bi, nb)
    bt = local_times(rng.random(len(bc)), rng.random(len(bc)) * 6, off[bc])
    add(bc, bt, EV["view"], rng.integers(0, len(CATEGORIES), len(bc)))
    # window shopping: sessions that look like intent (a burst, a lookup, a delivery check) and lead nowhere
    ws_rate = TRACES.window_shopping * np.sqrt(traits.browse / TRACES.browse_median)
    ws = np.flatnonzero(idle & (u[12] < np.where(st.alive, ws_rate, ws_rate / 3)))
    t_ws = local_times(u[13, ws], u[14, ws], off[ws])
    nw = rng.poisson(2.0, len(ws)) + 2
    wc = np.repeat(ws, nw)
    cum = np.cumsum(traits.cat_pref[ws], axis=1)
    wcat = (u[14, ws][:, None] > cum[:, :-1]).sum(axis=1)
    add(
        wc,
        np.maximum(np.repeat(t_ws, nw) - (rng.random(len(wc)) * 40 * 60e9).astype(np.int64), 0),
        EV["view"],
        np.repeat(wcat, nw),
    )
    wl = rng.random((3, len(ws)))
    sel = wl[0] < np.where(st.n_orders[ws] > 0, 0.6, 0.05)
    add(ws[sel], t_ws[sel] - (wl[1, sel] * 20 * 60e9).astype(np.int64), EV["order_history_view"], -1)
    sel = wl[1] < 0.55
    add(ws[sel], t_ws[sel] - (wl[2, sel] * 15 * 60e9).astype(np.int64), EV["delivery_check"], -1)
    sel = wl[2] < 0.15
    add(ws[sel], t_ws[sel], EV["cart"], wcat[sel])
    tracking = np.flatnonzero(idle & (st.s <= 4) & (st.n_orders > 0) & (u[9] < 0.12))
    add(
        tracking,
        local_times(u[10, tracking], u[11, tracking], off[tracking]),
        np.where(u[9, tracking] < 0.08, EV["delivery_check"], EV["order_history_view"]),
        -1,
    )
    # --- engagement: fades after dropout (weeks of silence precede the missing orders) ---
    since = np.where(st.dead_since >= 0, day - st.dead_since, 0)
    eng = np.where(st.alive, 1.0, 0.15 + 0.85 * np.exp(-since / 21.0)) * st.active
    ue = rng.random((5, n), dtype=np.float32)
    if ambient_email:
        em = np.flatnonzero(st.consent[:, 0] & (ue[0] < traits.engage * eng))
        t_em = local_times(ue[1, em], ue[2, em], off[em])
        add(em, t_em, EV["email_open"], -1)
        click = em[ue[3, em] < 0.25]
        add(click, t_em[ue[3, em] < 0.25] + 90 * 10**9, EV["email_click"], -1)
    pu = np.flatnonzero(st.consent[:, 2] & (ue[3] < traits.engage * 0.5 * eng) & (ue[3] >= 0))
    add(pu, local_times(ue[1, pu], ue[4, pu], off[pu]), EV["push_open"], -1)
    ap = np.flatnonzero((ue[4] < traits.app * eng) | ((out.in_intent | out.ordered) & (ue[4] < 0.4)))
    add(ap, local_times(ue[2, ap], ue[0, ap], off[ap]), EV["app_open"], -1)
    sc = np.flatnonzero(st.active & (ue[1] < 0.0008))
    add(sc, local_times(ue[2, sc], ue[3, sc], off[sc]), EV["support_contact"], -1)
    idle_views = np.concatenate([bc, wc])  # views outside purchase intent (hidden: for the trace tests)
    if not parts:
        return {
            "cust": np.zeros(0, np.int64),
            "t": np.zeros(0, np.int64),
            "type": np.zeros(0, np.int64),
            "cat": np.zeros(0, np.int64),
            "idle_views": idle_views,
        }
    cust, t, etype, cat = (np.concatenate(x) for x in zip(*parts, strict=True))
    return {
        "cust": cust.astype(np.int64),
        "t": day_ns + np.clip(t, 0, DAY_NS - 1),
        "type": etype,
        "cat": cat,
        "idle_views": idle_views,
    }


def message_events(
    events: dict[str, np.ndarray],
    st: State,
    cust: np.ndarray,
    channel: np.ndarray,
    day_ns: int,
    offsets: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Opens and clicks of the messages delivered today (sms leaves no trace); dormant customers rarely open."""
    u = rng.random((4, len(cust)))
    rate = np.where(st.alive[cust], 1.0, 0.3)
    t = local_times(u[0], u[1], offsets[cust])
    email_open = (channel == 0) & (u[2] < 0.45 * rate)
    click = email_open & (u[3] < 0.65)  # a personal message is clicked more than the newsletter
    push_open = (channel == 2) & (u[2] < 0.15 * rate)
    parts = [
        (cust[email_open], t[email_open], EV["email_open"]),
        (cust[click], t[click] + 60 * 10**9, EV["email_click"]),
        (cust[push_open], t[push_open], EV["push_open"]),
    ]
    if TRACES.click_visits:  # a click (or a push opened) lands on the shop: a visit
        parts.append((cust[click], t[click] + 90 * 10**9, EV["view"]))
        parts.append((cust[push_open], t[push_open] + 30 * 10**9, EV["view"]))
    return _append_events(events, parts, day_ns)


def _append_events(
    events: dict[str, np.ndarray], parts: list[tuple[np.ndarray, np.ndarray, int]], day_ns: int
) -> dict[str, np.ndarray]:
    """`events` with today's (customers, ns into the day, event type) parts appended, no category."""
    new = {
        "cust": np.concatenate([c for c, _, _ in parts]).astype(np.int64),
        "t": day_ns + np.clip(np.concatenate([x for _, x, _ in parts]), 0, DAY_NS - 1),
        "type": np.concatenate([np.full(len(c), e, np.int64) for c, _, e in parts]),
        "cat": np.full(sum(len(c) for c, _, _ in parts), -1, np.int64),
    }
    if not events:
        return new
    return {k: np.concatenate([events[k], new[k]]) for k in new}


def newsletter_events(
    events: dict[str, np.ndarray],
    traits: Traits,
    st: State,
    cust: np.ndarray,
    t_send: np.ndarray,
    day: int,
    day_ns: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Opens and clicks of today's newsletter (`cust` got it at `t_send`, ns into the day).

    The chance to open is the customer's own e-mail engagement, far lower for customers who dislike
    messages, fading after dropout (weeks of silence precede the missing orders) and with e-mail fatigue;
    averse customers also click less. This is the trace message aversion leaves in the data.
    """
    u = rng.random((3, len(cust)))
    since = np.where(st.dead_since[cust] >= 0, day - st.dead_since[cust], 0)
    eng = np.where(st.alive[cust], 1.0, 0.5 + 0.5 * np.exp(-since / 21.0))
    # (a newsletter is still read by many who stopped buying: the fade is milder than for browsing)
    averse = traits.averse[cust]
    p_open = (
        np.minimum(0.85, TRACES.open_per_engage * traits.engage[cust])
        * np.where(averse, TRACES.averse_open, 1.0)
        * eng
        / (1.0 + 0.3 * st.fatigue[cust, 0])
    )
    opened = u[0] < p_open
    clicked = opened & (u[1] < np.where(averse, TRACES.averse_click, TRACES.click))
    t_open = np.minimum(
        t_send + (-np.log(np.maximum(u[2], 1e-12)) * 3 * 3600e9).astype(np.int64), DAY_NS - 120e9
    )
    t_open = t_open.astype(np.int64)
    parts = [
        (cust[opened], t_open[opened], EV["email_open"]),
        (cust[clicked], t_open[clicked] + 60 * 10**9, EV["email_click"]),
    ]
    if TRACES.click_visits:  # a click lands on the shop: a visit
        parts.append((cust[clicked], t_open[clicked] + 90 * 10**9, EV["view"]))
    return _append_events(events, parts, day_ns)


def t_of_or(t_end: np.ndarray, ii: np.ndarray, who: np.ndarray) -> np.ndarray:
    """The session end of customers `who` (a subset of `ii`, both sorted)."""
    return t_end[np.searchsorted(ii, who)]


# --- assembling tables -----------------------------------------------------------------------------


def customer_ids(n: int, first: int = 0) -> np.ndarray:
    """Stable string ids (object array), shared by every table so no string is built twice."""
    return np.array([f"C{i:07d}" for i in range(first, first + n)], dtype=object)


def _cat_names(codes: np.ndarray) -> np.ndarray:
    names = np.array([*CATEGORIES, None], dtype=object)
    return names[np.where(codes < 0, len(CATEGORIES), codes)]


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    # an index, not a Series: a Series would be aligned on its index when the frame is built (slow)
    return pd.DatetimeIndex(ns.astype(np.int64).view("datetime64[ns]")).tz_localize("UTC")


def customers_table(
    traits: Traits, ids: np.ndarray, start_ns: int, upto_day: int, signup_tod: np.ndarray
) -> pd.DataFrame:
    idx = np.flatnonzero(traits.signup_day < upto_day)
    zones = np.array([t[0] for t in TIMEZONES], dtype=object)
    regions = np.array([t[1] for t in TIMEZONES], dtype=object)
    signup = start_ns + traits.signup_day[idx].astype(np.int64) * DAY_NS + signup_tod[idx]
    return pd.DataFrame(
        {
            "customer_id": ids[idx],
            "signup_at": _utc(signup),
            "birthday": pd.Series(traits.birthday[idx].astype("datetime64[ns]")),
            "timezone": zones[traits.tz[idx]],
            "region": regions[traits.tz[idx]],
            "consent_email": traits.consent0[idx, 0],
            "consent_sms": traits.consent0[idx, 1],
            "consent_push": traits.consent0[idx, 2],
        }
    )


def orders_table(parts: list[dict[str, np.ndarray]], ids: np.ndarray, first_seq: int) -> pd.DataFrame:
    cols = _concat(parts, ("cust", "t", "amount", "discount", "cat", "items", "returned"))
    order = np.lexsort((cols["cust"], cols["t"]))
    cols = {k: v[order] for k, v in cols.items()}
    seq = np.arange(first_seq, first_seq + len(order))
    return pd.DataFrame(
        {
            "order_id": np.array([f"O{i:09d}" for i in seq], dtype=object),
            "customer_id": ids[cols["cust"]],
            "ordered_at": _utc(cols["t"]),
            "amount": cols["amount"].astype(np.float64),
            "category": _cat_names(cols["cat"]),
            "discount": cols["discount"].astype(np.float64),
            "items": cols["items"].astype(np.int64),
            "returned_amount": cols["returned"].astype(np.float64),
        }
    )


def events_table(parts: list[dict[str, np.ndarray]], ids: np.ndarray) -> pd.DataFrame:
    cols = _concat(parts, ("cust", "t", "type", "cat"))
    order = np.lexsort((cols["type"], cols["cust"], cols["t"]))
    types = np.array(EVENT_TYPES, dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids[cols["cust"][order]],
            "occurred_at": _utc(cols["t"][order]),
            "event_type": types[cols["type"][order]],
            "category": _cat_names(cols["cat"][order]),
        }
    )


def messages_table(parts: list[dict[str, np.ndarray]], ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    """The newsletter's sends as the canonical `messages` table, built column-wise in Arrow (millions of
    rows: ids as Arrow strings, channel / source / campaign as categoricals). message_id is
    `<campaign>:<customer_id>` with campaign `newsletter-<date of the send>` (one send per customer each)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rebuy.contract import ARROW_STR

    cols = _concat(parts, ("cust", "t", "day"))
    order = np.lexsort((cols["cust"], cols["t"]))
    cust, t, day = cols["cust"][order], cols["t"][order], cols["day"][order]
    n = len(cust)
    days, day_code = np.unique(day, return_inverse=True)
    names = [f"{NEWSLETTER_CAMPAIGN}-{(start + pd.Timedelta(days=int(d))).date().isoformat()}" for d in days]
    campaign = pd.Categorical.from_codes(day_code.astype(np.int32), categories=pd.Index(names))
    cid = pc.take(pa.array(ids, type=pa.string()), pa.array(cust, type=pa.int64()))
    camp = pc.take(pa.array(names, type=pa.string()), pa.array(day_code.astype(np.int64), type=pa.int64()))
    mid = pc.binary_join_element_wise(camp, cid, ":")
    return pd.DataFrame(
        {
            "message_id": pd.array(mid, dtype=ARROW_STR),
            "customer_id": pd.array(cid, dtype=ARROW_STR),
            "sent_at": _utc(t),
            "channel": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=pd.Index(["email"])),
            "source": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=pd.Index(["newsletter"])),
            "campaign": campaign,
            "offer": pd.Categorical.from_codes(np.full(n, -1, np.int8), categories=pd.Index(["none"])),
        }
    )


def consents_table(parts: list[dict[str, np.ndarray]], ids: np.ndarray) -> pd.DataFrame:
    cols = _concat(parts, ("cust", "channel", "t", "consent", "source"))
    order = np.lexsort((cols["channel"], cols["cust"], cols["t"]))
    chans = np.array(SIM_CHANNELS, dtype=object)
    sources = np.array(["preference_center", "unsubscribe_link"], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids[cols["cust"][order]],
            "changed_at": _utc(cols["t"][order]),
            "channel": chans[cols["channel"][order]],
            "consent": cols["consent"][order].astype(bool),
            "source": sources[cols["source"][order]],
        }
    )


def _concat(parts: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p]
    if not parts:
        return {k: np.zeros(0, np.int64) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}
