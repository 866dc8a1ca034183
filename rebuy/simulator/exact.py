"""Exact P(first order by day t) from a hidden state: the step function's own chain, without sampling.

Until a customer's next order, nothing in `dynamics.step` depends on chance except the intent chain
(start, length, conversion) and dropout, and the days since the last order advance deterministically.
So the distribution over (signed up, alive, intent days left, first intent day or not) can be pushed
forward exactly, per customer, vectorised. This gives the oracle's probabilities without Monte Carlo
noise (tiny probabilities of dormant customers included); tests check it against the sampled steps.
"""

from __future__ import annotations

import numpy as np

from rebuy.simulator.dynamics import (
    DAILY_DROP,
    FIRST_INTENT_DAY_CONV,
    INTENT_CONTINUE,
    MAX_INTENT,
    Agents,
    State,
)

# P(episode length = l), l = 1..MAX_INTENT (truncated geometric, as `step` draws it)
_L = np.array(
    [(1 - INTENT_CONTINUE) * INTENT_CONTINUE ** (k - 1) for k in range(1, MAX_INTENT)]
    + [INTENT_CONTINUE ** (MAX_INTENT - 1)]
)


def survival(
    st: State,
    ag: Agents,
    day0: int,
    days: int,
    season: np.ndarray,
    doy: np.ndarray,
    alive_prob: np.ndarray | None = None,
) -> np.ndarray:
    """S[:, t] = P(no order on days day0 .. day0+t-1), t = 0..days, for every element of `st`.

    `season` and `doy` are indexed by absolute day. `alive_prob` overrides the alive state
    (a wake-up gift revives with a probability); the offer's effect is read from `st` (eff_*).
    """
    m = len(st.s)
    alive0 = st.alive.astype(float) if alive_prob is None else alive_prob
    act = st.active.astype(float)
    inact = 1.0 - act  # not signed up yet
    # intent mass [alive?, left-1, first day?]; at the start of a day an ongoing episode is past its first day
    intent = np.zeros((m, 2, MAX_INTENT, 2))
    left = st.intent_left.astype(int)
    has = (left > 0) & st.active
    rows = np.flatnonzero(has)
    a_idx = st.alive[rows].astype(int)
    intent[rows, a_idx, left[rows] - 1, 0] = 1.0
    free_a = act * (~has) * alive0
    free_d = act * (~has) * (1.0 - alive0)
    if alive_prob is not None:
        # a revived mass moves from dormant to alive for customers in an episode as well
        moved = intent[:, 0] * (alive_prob - st.alive)[:, None, None]
        intent[:, 1] += moved
        intent[:, 0] -= moved
    out = np.ones((m, days + 1))
    hcum = st.hcum.astype(float).copy()
    s = st.s.astype(float).copy()
    near_b = ag.bday_doy
    for t in range(days):
        d = day0 + t
        # signups today: first order at signup (ordered) or a fresh free alive customer
        new = (ag.signup_day == d) & (inact > 0)
        ordered = np.where(new & ag.first_at_signup, inact, 0.0)
        joined = np.where(new & ~ag.first_at_signup, inact, 0.0)  # no intent, no dropout on the signup day
        inact = np.where(new, 0.0, inact)
        s = np.where(new, 0.0, s)
        hcum = np.where(new, 0.0, hcum)
        run = ~new & (inact == 0)
        h_next = ((s + 1.0) / ag.scale) ** ag.shape
        dh = np.where(run, h_next - hcum, 0.0)
        hcum = np.where(run, h_next, hcum)
        tau = np.where(st.eff_until > d, st.eff_tau, 0.0)
        near = (near_b >= 0) & (np.abs(((near_b - doy[d] + 182) % 365) - 182) <= 3)
        mult = season[d] * np.where(near, 1.4, 1.0) * np.exp(tau)
        q_a = -np.expm1(-dh * mult)
        q_d = -np.expm1(-dh * mult * ag.asleep)
        start_a, start_d = free_a * q_a, free_d * q_d
        free_a, free_d = free_a - start_a, free_d - start_d
        intent[:, 1, :, 1] += start_a[:, None] * _L[None, :]
        intent[:, 0, :, 1] += start_d[:, None] * _L[None, :]
        # conversion: first intent day at the reduced rate
        base = ag.conv * np.exp(0.5 * tau)
        p_first = np.minimum(base * FIRST_INTENT_DAY_CONV, 0.97)
        p_later = np.minimum(base, 0.97)
        conv = np.stack([p_later, p_first], axis=1)[:, None, None, :]  # index 1 = first day
        ordered = ordered + (intent * conv).sum(axis=(1, 2, 3))
        intent = intent * (1.0 - conv)
        # the episode goes on (left - 1) with age past the first day; left 1 ends back in the free state
        ended = intent[:, :, 0, :].sum(axis=2)  # (m, 2 alive)
        nxt = np.zeros_like(intent)
        nxt[:, :, :-1, 0] = intent[:, :, 1:, :].sum(axis=3)
        intent = nxt
        free_a = free_a + ended[:, 1]
        free_d = free_d + ended[:, 0]
        # daily dropout of alive customers who did not order (an episode is dropped with them)
        drop_i = intent[:, 1].sum(axis=(1, 2)) * DAILY_DROP
        intent[:, 1] *= 1.0 - DAILY_DROP
        drop_f = free_a * DAILY_DROP
        free_a = free_a - drop_f
        free_d = free_d + drop_f + drop_i
        free_a = free_a + joined
        s = np.where(inact == 0, s + 1.0, s)
        out[:, t + 1] = out[:, t] - ordered
    return np.clip(out, 0.0, 1.0)
