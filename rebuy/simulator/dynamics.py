"""One day of the shop: the single step function behind the history, the live shop and the oracle.

Everything works on flat arrays of "elements": one element per customer when writing the history,
one per (customer, Monte Carlo path) when the oracle looks forward. `Agents` holds the traits
gathered per element; `State` the hidden state that changes day by day.

The model, per alive customer and day:
- purchase intent starts with the discrete hazard of a Weibull renewal process in the days since the
  last order (personal scale and shape), times the shop's season, a birthday week, and the active
  offer's effect exp(tau);
- an intent episode lasts a few days and ends in an order with a per-day conversion probability
  (lower on its first day: people browse, look up past orders and check delivery first);
- after each order the customer drops out with a personal probability (BG/NBD-like), and there is a
  small daily dropout too; dropped customers never order unless a wake-up gift revives them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import ndtri

from rebuy.simulator.params import SIM_CHANNELS, SIM_OFFERS, TRACES, SimConfig, Traits

DAILY_DROP = 1.0 / 1000.0
FIRST_INTENT_DAY_CONV = 0.5  # first day of an episode converts at half the customer's rate
INTENT_CONTINUE = 0.5  # geometric episode length: P(another day)
MAX_INTENT = 6
FATIGUE_DECAY = np.array([0.90, 0.95, 0.75], dtype=np.float32)  # per day, email / sms / push
FATIGUE_COST = np.array([0.25, 0.4, 0.2], dtype=np.float32)  # tau lost per unit of fatigue
OPT_OUT = 0.0002  # daily chance to withdraw a consent, before message annoyance
OPT_IN = 0.00006
N_DRAWS = 9  # uniform draws per element and day (see `step`); a new draw goes last (earlier rows stay put)

CONSENT_BAND = 0.045  # one uniform decides consent changes: 3 channels x max daily chance
OFFER_CODE = {o: i for i, o in enumerate(SIM_OFFERS)}


@dataclass
class Agents:
    """Traits per element (gathered from `Traits` by customer index)."""

    cust: np.ndarray
    signup_day: np.ndarray
    first_at_signup: np.ndarray
    scale: np.ndarray
    shape: np.ndarray
    p_drop: np.ndarray
    asleep: np.ndarray
    conv: np.ndarray
    value: np.ndarray
    cat_cum: np.ndarray
    price_sens: np.ndarray
    averse: np.ndarray
    revive: np.ndarray
    bday_doy: np.ndarray
    noise: np.ndarray

    @classmethod
    def gather(cls, traits: Traits, idx: np.ndarray) -> Agents:
        return cls(
            cust=idx,
            signup_day=traits.signup_day[idx],
            first_at_signup=traits.first_at_signup[idx],
            scale=traits.scale[idx],
            shape=traits.shape[idx],
            p_drop=traits.p_drop[idx],
            asleep=traits.asleep[idx],
            conv=traits.conv[idx],
            value=traits.value[idx],
            cat_cum=np.cumsum(traits.cat_pref[idx], axis=1)[:, :-1],
            price_sens=traits.price_sens[idx],
            averse=traits.averse[idx],
            revive=traits.revive[idx],
            bday_doy=traits.bday_doy[idx],
            noise=traits.noise[idx],
        )


@dataclass
class State:
    """The hidden state of each element at the start of a day."""

    active: np.ndarray  # signed up
    alive: np.ndarray  # False: dormant (dropped out; a small residual purchase rate)
    s: np.ndarray  # full days since the last order (since signup before the first)
    hcum: np.ndarray  # the Weibull cumulative hazard at s
    n_orders: np.ndarray
    spend: np.ndarray  # total paid so far
    n_disc: np.ndarray  # orders that carried a discount
    last_cat: np.ndarray  # category of the last order, -1 before the first
    intent_left: np.ndarray  # days left in the current intent episode (0: none)
    intent_age: np.ndarray  # days already spent in the episode
    intent_cat: np.ndarray
    dead_since: np.ndarray  # day the customer went dormant, -1 while alive
    fatigue: np.ndarray  # (m, 3) decayed count of recent messages per channel
    eff_until: np.ndarray  # the active offer works on days < eff_until
    eff_tau: np.ndarray  # its log-multiplier of purchase intent
    eff_offer: np.ndarray  # its index into SIM_OFFERS (0: none)
    consent: np.ndarray  # (m, 3) email, sms, push

    @classmethod
    def initial(cls, traits: Traits) -> State:
        n = len(traits.signup_day)
        return cls(
            active=np.zeros(n, bool),
            alive=np.zeros(n, bool),
            s=np.zeros(n, np.int32),
            hcum=np.zeros(n),
            n_orders=np.zeros(n, np.int32),
            spend=np.zeros(n),
            n_disc=np.zeros(n, np.int32),
            last_cat=np.full(n, -1, np.int8),
            intent_left=np.zeros(n, np.int8),
            intent_age=np.zeros(n, np.int8),
            intent_cat=np.zeros(n, np.int8),
            dead_since=np.full(n, -1, np.int32),
            fatigue=np.zeros((n, 3), np.float32),
            eff_until=np.zeros(n, np.int32),
            eff_tau=np.zeros(n, np.float32),
            eff_offer=np.zeros(n, np.int8),
            consent=traits.consent0.copy(),
        )

    def take(self, idx: np.ndarray) -> State:
        """Rows `idx` (copies): a subset of customers, or each customer repeated per path."""
        return State(**{f.name: getattr(self, f.name)[idx].copy() for f in fields(self)})

    def copy(self) -> State:
        return State(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class DayOut:
    """What happened on one day, per element (the raw material of the tables and of the oracle)."""

    ordered: np.ndarray
    amount: np.ndarray  # paid, 0 where no order
    discount: np.ndarray
    order_cat: np.ndarray
    in_intent: np.ndarray  # an intent day (signals are emitted on these)
    intent_first: np.ndarray  # the episode started today
    new: np.ndarray  # signed up today
    died: np.ndarray
    consent_change: np.ndarray  # (m, 3) toggled today
    newsletter: np.ndarray  # received the shop's newsletter today (e-mail consent at the start of the day)


def step(
    st: State,
    ag: Agents,
    day: int,
    season: float,
    sale: bool,
    doy: int,
    u: np.ndarray,
    shipping: float = 4.9,
    newsletter: bool = False,
) -> DayOut:
    """Advance `st` in place by one day, using the uniforms `u` (N_DRAWS, m) of `draws`.

    Taking the draws as an argument lets the oracle run every offer arm on the same random numbers.
    `shipping` is what free shipping is worth to the customer (the discount it books). On a
    `newsletter` day every signed-up customer with e-mail consent gets the shop's newsletter: it adds
    e-mail fatigue and sometimes costs the consent (far more often for customers who dislike messages).
    """
    new = ~st.active & (ag.signup_day == day)
    st.active |= new
    st.alive |= new
    st.s[new] = 0
    st.hcum[new] = 0.0
    on = st.eff_until > day
    offers_on = bool(on.any())
    tau = np.where(on, st.eff_tau, np.float32(0.0))
    # -- purchase intent starts (renewal hazard; dormant customers keep a small residual rate) --
    # the cumulative hazard runs on through intent episodes, so a failed episode brings no catch-up
    run = np.flatnonzero(st.active & ~new)
    h_next = ((st.s[run] + 1.0) / ag.scale[run]) ** ag.shape[run]
    free = st.intent_left[run] == 0
    act = run[free]
    dh = (h_next - st.hcum[run])[free]
    st.hcum[run] = h_next
    b = ag.bday_doy[act]
    near = (b >= 0) & (np.abs(((b - doy + 182) % 365) - 182) <= 3)
    mult = season * np.where(near, 1.4, 1.0) * np.where(st.alive[act], 1.0, ag.asleep[act])
    if offers_on:
        mult = mult * np.exp(tau[act])
    start = np.zeros(len(st.s), bool)
    start[act] = u[0, act] < -np.expm1(-dh * mult)
    first = new & ag.first_at_signup
    si = np.flatnonzero(start | first)
    length = 1 + np.minimum(
        np.floor(np.log(np.maximum(u[1, si], 1e-12)) / np.log(INTENT_CONTINUE)), MAX_INTENT - 1
    )
    cat = (u[2, si][:, None] > ag.cat_cum[si]).sum(axis=1).astype(np.int8)
    st.intent_left[si] = np.where(first[si], 0, length)
    st.intent_age[si] = 0
    st.intent_cat[si] = cat
    in_intent = st.active & (st.intent_left > 0)
    # -- orders: intent days convert; most customers' first order is their signup --
    ii = np.flatnonzero(in_intent)
    p = ag.conv[ii] * np.where(st.intent_age[ii] == 0, FIRST_INTENT_DAY_CONV, 1.0)
    if offers_on:
        p = p * np.exp(0.5 * tau[ii])
    ordered = first.copy()
    ordered[ii] |= u[3, ii] < np.minimum(p, 0.97)
    oi = np.flatnonzero(ordered)
    order_cat = st.intent_cat.copy()
    # -- values: the customer's own level, right-skewed noise; offer and sale discounts --
    amount = np.zeros(len(st.s))
    discount = np.zeros(len(st.s))
    z = ndtri(np.clip(u[7, oi], 1e-7, 1 - 1e-7))
    gross = np.round(ag.value[oi] * np.exp(0.75 * z - 0.28), 2)
    offer = np.where(on[oi], st.eff_offer[oi], 0)
    coupon = offer == OFFER_CODE["coupon_10pct"]
    # price-sensitive customers hunt discounts: coupon codes on ordinary days, promotions on sale days
    ps = ag.price_sens[oi]
    if sale:
        promo = (u[4, oi] < TRACES.sale_promo_base + TRACES.sale_promo_per_ps * ps) & ~coupon
        code = np.zeros(len(oi), bool)
    else:
        promo = np.zeros(len(oi), bool)
        code = (u[4, oi] < TRACES.code_use * ps) & ~coupon
    rate = np.where(coupon | code, 0.10, 0.0) + np.where(promo, 0.15, 0.0)
    amount[oi] = gross
    discount[oi] = (
        np.round(gross * rate, 2)
        + np.where(offer == OFFER_CODE["free_shipping"], shipping, 0.0)
        + np.where(offer == OFFER_CODE["points_x2"], np.round(0.01 * gross, 2), 0.0)
    )
    # -- bookkeeping; dropout after orders (and a little every day); an order wakes a dormant customer --
    st.n_orders[oi] += 1
    st.spend[oi] += gross
    st.n_disc[oi] += discount[oi] > 0
    st.last_cat[oi] = order_cat[oi]
    st.s += st.active
    st.s[oi] = 0
    st.hcum[oi] = 0.0
    st.intent_age = np.where(in_intent, st.intent_age + 1, 0).astype(np.int8)
    st.intent_left = np.maximum(st.intent_left - 1, 0).astype(np.int8)
    st.intent_left[oi] = 0
    was_alive = st.alive.copy()
    st.alive[oi] = u[5, oi] >= ag.p_drop[oi]
    daily = st.alive & ~ordered & ~new & (u[5] < DAILY_DROP)
    st.alive &= ~daily
    died = was_alive & ~st.alive
    st.dead_since[died] = day
    st.dead_since[oi[st.alive[oi]]] = -1
    st.intent_left[died] = 0
    # -- messages fade; consents change, more often for customers annoyed by recent messages --
    toggle = np.zeros((len(st.s), 3), bool)
    nl = (st.active & ~new & st.consent[:, 0]) if newsletter else np.zeros(len(st.s), bool)
    cand = np.flatnonzero((u[6] < CONSENT_BAND) & st.active & ~new)
    if len(cand):
        v = u[6, cand] / CONSENT_BAND * 3.0
        ch = np.minimum(v.astype(np.int64), 2)
        w = (v - ch) * (CONSENT_BAND / 3.0)  # uniform on [0, band / 3)
        cons = st.consent[cand, ch]
        annoy = ag.averse[cand] * np.minimum(st.fatigue[cand, ch], 3.0) * 0.004
        flip = np.where(cons, w < OPT_OUT + annoy, w < OPT_IN)
        toggle[cand[flip], ch[flip]] = True
        st.consent[cand[flip], ch[flip]] ^= True
    if newsletter:
        ni = np.flatnonzero(nl)
        st.fatigue[ni, 0] += TRACES.newsletter_fatigue
        p_unsub = np.where(ag.averse[ni], TRACES.newsletter_unsub_averse, TRACES.newsletter_unsub)
        gone = ni[(u[8, ni] < p_unsub) & st.consent[ni, 0] & ~toggle[ni, 0]]
        st.consent[gone, 0] = False
        toggle[gone, 0] = True
    st.fatigue *= FATIGUE_DECAY
    return DayOut(
        ordered=ordered,
        amount=amount,
        discount=discount,
        order_cat=order_cat,
        in_intent=in_intent,
        intent_first=start | first,
        new=new,
        died=died,
        consent_change=toggle,
        newsletter=nl,
    )


def draws(rng: np.random.Generator, m: int) -> np.ndarray:
    """The day's random numbers for m elements (N_DRAWS uniforms each), always drawn in the same order."""
    return rng.random((N_DRAWS, m), dtype=np.float32)


# --- offers ------------------------------------------------------------------------------------------


def true_tau(cfg: SimConfig, offer: int, ag: Agents, st: State, channel: np.ndarray) -> np.ndarray:
    """Each element's true log-multiplier of purchase intent if `offer` arrives now on `channel`.

    Depends on value tier, recency against the own cycle, price sensitivity, message aversion and
    per-channel fatigue; negative for some customers. `cfg.effects` picks the scenario.
    """
    name = SIM_OFFERS[offer]
    if name == "none":
        return np.zeros(len(st.s), np.float32)
    vz = (np.log(ag.value) - np.log(42.0)) / 0.45
    overdue = np.minimum(st.s / ag.scale, 4.0)
    ps, av = ag.price_sens, ag.averse.astype(float)
    if cfg.effects == "heterogeneous":
        base = {
            "care_message": TRACES.care_message_tau + 0.15 * (vz > 0.5) - 0.25 * (ps > 0.6),
            "coupon_10pct": -0.25 + 1.1 * ps,
            "free_shipping": -0.05 + 0.5 * ps + 0.3 * (vz < -0.5),
            "points_x2": 0.05 + 0.3 * np.clip(vz, -1.5, 2.0) + 0.1 * (st.n_orders >= 3),
            "wake_up_gift": 0.1 + 0.15 * overdue,
        }[name]
        base = base - 0.7 * av + ag.noise[:, offer]
    elif cfg.effects == "uniform":
        base = {
            "care_message": 0.05,
            "coupon_10pct": 0.6,
            "free_shipping": 0.2,
            "points_x2": 0.15,
            "wake_up_gift": 0.25,
        }[name] + 0.3 * ag.noise[:, offer]
    else:  # "none": messages do nothing or harm; the best policy sends nothing
        base = -0.1 - 0.3 * av + 0.3 * ag.noise[:, offer]
    ch = np.clip(channel, 0, 2)
    fat = st.fatigue[np.arange(len(ch)), ch] * FATIGUE_COST[ch]
    return (cfg.effect_scale * base - fat).astype(np.float32)


def apply_offers(
    cfg: SimConfig,
    st: State,
    ag: Agents,
    elems: np.ndarray,
    offer: np.ndarray,
    channel: np.ndarray,
    day: int,
    u: np.ndarray,
) -> np.ndarray:
    """Deliver offers to elements `elems` on `day` (in place); returns which were delivered.

    A message reaches the customer only on a consented channel and while they are signed up; a wake-up
    gift revives a dropped customer with their personal probability (`u`: one uniform per element).
    """
    if len(elems) == 0:
        return np.zeros(0, bool)
    ch = np.clip(channel, 0, 2)
    ok = (offer > 0) & (channel >= 0) & st.active[elems] & st.consent[elems, ch]
    e, o, c = elems[ok], offer[ok], ch[ok]
    sub_ag = Agents(**{f.name: getattr(ag, f.name)[e] for f in fields(ag)})
    sub_st = st.take(e)
    tau = np.zeros(len(e), np.float32)
    for code in np.unique(o):
        sel = o == code
        part_ag = Agents(**{f.name: getattr(sub_ag, f.name)[sel] for f in fields(sub_ag)})
        tau[sel] = true_tau(cfg, int(code), part_ag, sub_st.take(np.flatnonzero(sel)), c[sel])
    gift = o == SIM_OFFERS.index("wake_up_gift")
    revived = gift & ~st.alive[e] & (u[ok] < ag.revive[e])
    st.alive[e[revived]] = True
    st.dead_since[e[revived]] = -1
    st.eff_tau[e] = tau
    st.eff_until[e] = day + cfg.effect_days
    st.eff_offer[e] = o
    np.add.at(st.fatigue, (e, c), 1.0)
    return ok


def choose_channel(consent: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The wanted channel where consented, else the first consented one, else the wanted (undeliverable).

    The rule of a campaign tool with a preferred channel per offer; shared by campaigns and the oracle.
    """
    rows = np.arange(len(want))
    ok = (want >= 0) & consent[rows, np.clip(want, 0, 2)]
    first = np.argmax(consent, axis=1).astype(np.int8)
    return np.where(ok, want, np.where(consent.any(axis=1), first, want)).astype(np.int8)


def channel_index(names: np.ndarray) -> np.ndarray:
    """email/sms/push -> 0/1/2; anything else (none) -> -1."""
    out = np.full(len(names), -1, np.int8)
    for i, c in enumerate(SIM_CHANNELS):
        out[np.asarray(names, dtype=object) == c] = i
    return out


def offer_index(names: np.ndarray) -> np.ndarray:
    names = np.asarray(names, dtype=object)
    unknown = sorted(set(names.tolist()) - set(SIM_OFFERS))
    if unknown:
        raise ValueError(f"unknown offers {unknown}; the simulator knows {list(SIM_OFFERS)}")
    out = np.zeros(len(names), np.int8)
    for i, o in enumerate(SIM_OFFERS):
        out[names == o] = i
    return out
