"""Order-history summary and the BG/NBD baseline (own scipy fit of Fader–Hardie–Lee)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.baselines import BGNBD, bgnbd_loglik, fit_bgnbd, rfm_at

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def test_rfm_at_uses_only_orders_up_to_the_cutoff():
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ordered_at": [
                T0,
                T0 + pd.Timedelta(days=10),
                T0 + pd.Timedelta(days=30),
                T0 + pd.Timedelta(days=40),
            ],
        }
    )
    pairs = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "cutoff": [T0 + pd.Timedelta(days=20)] * 2 + [T0 + pd.Timedelta(days=30)],
        }
    )
    r = rfm_at(orders, pairs).set_index(["customer_id", "cutoff"])
    a20 = r.loc[("a", T0 + pd.Timedelta(days=20))]
    assert (a20.rfm_orders, a20.rfm_x, a20.rfm_t_x, a20.rfm_T, a20.rfm_recency) == (2, 1, 10, 20, 10)
    a30 = r.loc[("a", T0 + pd.Timedelta(days=30))]  # the order exactly at the cutoff counts (<=)
    assert (a30.rfm_orders, a30.rfm_t_x, a30.rfm_recency) == (3, 30, 0)
    b20 = r.loc[("b", T0 + pd.Timedelta(days=20))]
    assert b20.rfm_orders == 0 and math.isnan(b20.rfm_recency)


def test_loglik_matches_the_paper_formula_by_hand():
    r, alpha, a, b = 0.5, 10.0, 1.0, 3.0
    # x = 0, T = 20: L = (alpha/(alpha+T))^r = (10/30)^0.5
    assert bgnbd_loglik(np.array([r, alpha, a, b]), np.array([0.0]), np.array([0.0]), np.array([20.0]))[
        0
    ] == pytest.approx(0.5 * math.log(10 / 30))
    # x = 1, t_x = 5, T = 20: L = B(a,b+1)/B(a,b) Γ(r+1)α^r/(Γ(r)(α+T)^(r+1)) + B(a+1,b)/B(a,b) Γ(r+1)α^r/(Γ(r)(α+t_x)^(r+1))
    #   B(a,b+1)/B(a,b) = b/(a+b) = 0.75; B(a+1,b)/B(a,b) = a/(a+b) = 0.25; Γ(1.5)/Γ(0.5) = 0.5
    g = 0.5 * alpha**r
    expected = 0.75 * g / 30**1.5 + 0.25 * g / 15**1.5
    assert bgnbd_loglik(np.array([r, alpha, a, b]), np.array([1.0]), np.array([5.0]), np.array([20.0]))[
        0
    ] == pytest.approx(math.log(expected))


def test_p_alive_and_p_order_by_hand():
    m = BGNBD(r=0.5, alpha=10.0, a=1.0, b=3.0)
    # x = 0: alive by definition (dropout only after a purchase)
    assert m.p_alive(np.array([0.0]), np.array([0.0]), np.array([50.0]))[0] == 1.0
    # x = 2, t_x = 5, T = 20: 1 / (1 + a/(b+x-1) ((α+T)/(α+t_x))^(r+x)) = 1/(1 + 0.25 * 2^2.5)
    assert m.p_alive(np.array([2.0]), np.array([5.0]), np.array([20.0]))[0] == pytest.approx(
        1 / (1 + 0.25 * 2**2.5)
    )
    # P(order in 30 d | x=0, T=20) = 1 - (30/60)^0.5
    assert m.p_order_within(30, np.array([0.0]), np.array([0.0]), np.array([20.0]))[0] == pytest.approx(
        1 - 0.5**0.5
    )


def test_fit_recovers_the_parameters_of_simulated_bgnbd_customers():
    rng = np.random.default_rng(11)
    n, T_end = 6000, 365.0
    true = BGNBD(r=0.8, alpha=30.0, a=1.5, b=6.0)
    lam = rng.gamma(true.r, 1 / true.alpha, n)
    p = rng.beta(true.a, true.b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T_end:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    fit = fit_bgnbd(x, t_x, np.full(n, T_end))
    # r/alpha is the mean purchase rate, a/(a+b) the mean dropout probability: both well identified
    assert fit.r / fit.alpha == pytest.approx(true.r / true.alpha, rel=0.15)
    assert fit.a / (fit.a + fit.b) == pytest.approx(true.a / (true.a + true.b), rel=0.25)
