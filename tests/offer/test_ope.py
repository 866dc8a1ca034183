"""IPS / SNIPS / DR, Qini and per-arm effects against small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rebuy.errors import RebuyError
from training.ope import (
    Z95,
    Estimate,
    arm_effects,
    difference,
    dr,
    dr_difference,
    estimator_terms,
    ips,
    qini,
    qini_curve,
    should_promote,
    sndr_terms,
    snips,
    uplift_at_k,
)

# actions: 0 = none, 1 = offer A. Target policy: rows 1-2 get A, rows 3-4 get none.
ACTION = np.array([1, 0, 1, 0])
PROP = np.array([0.5, 0.5, 0.25, 0.75])
REWARD = np.array([10.0, 0.0, 4.0, 3.0])
PI = np.array([[0, 1], [0, 1], [1, 0], [1, 0]], dtype=float)
Q_HAT = np.array([[2, 6], [2, 6], [1, 3], [1, 3]], dtype=float)


def test_ips_by_hand() -> None:
    # weights π(a_i)/p_i = 2, 0, 0, 4/3; terms 20, 0, 0, 4 -> mean 6
    est = ips(PI, ACTION, PROP, REWARD)
    assert est.value == pytest.approx(6.0)
    # deviations 14, -6, -6, -2: sample variance 272/3, se = sd / sqrt(4)
    assert est.se == pytest.approx(np.sqrt(272 / 3) / 2)
    assert est.low == pytest.approx(6.0 - Z95 * est.se)


def test_snips_by_hand() -> None:
    # Σ w r = 24, Σ w = 10/3 -> 7.2
    est = snips(PI, ACTION, PROP, REWARD)
    assert est.value == pytest.approx(7.2)
    # influence w (r - 7.2) / mean(w) = [5.6, 0, 0, -5.6] / (5/6) = [6.72, 0, 0, -6.72]
    assert est.se == pytest.approx(np.sqrt(2 * 6.72**2 / 3) / 2)


def test_dr_by_hand() -> None:
    # direct terms 6, 6, 1, 1; corrections 2(10-6)=8, 0, 0, 4/3(3-1)=8/3 -> (22 + 8/3) / 4
    est = dr(PI, ACTION, PROP, REWARD, Q_HAT)
    assert est.value == pytest.approx((22 + 8 / 3) / 4)


def test_dr_difference_is_paired() -> None:
    nobody = np.array([[1, 0]] * 4, dtype=float)
    diff = dr_difference(PI, nobody, ACTION, PROP, REWARD, Q_HAT)
    assert diff.value == pytest.approx(
        dr(PI, ACTION, PROP, REWARD, Q_HAT).value - dr(nobody, ACTION, PROP, REWARD, Q_HAT).value
    )


def test_dr_equals_ips_with_zero_reward_model() -> None:
    assert dr(PI, ACTION, PROP, REWARD, np.zeros_like(Q_HAT)).value == pytest.approx(6.0)


def test_bad_propensity_is_refused() -> None:
    with pytest.raises(RebuyError, match="propensities"):
        ips(PI, ACTION, np.array([0.5, 0.0, 0.25, 0.75]), REWARD)


def test_promotion_refuses_a_worse_policy() -> None:
    # the logged data favour "nobody": rows 2 and 4 (action none) earned 0 and 3, but the candidate
    # (always A) is valued by the reward model q(A) = 6 and 3 and the two A rows (10, 4)
    always_a = np.array([[0, 1]] * 4, dtype=float)
    nobody = np.array([[1, 0]] * 4, dtype=float)
    worse = dr_difference(nobody, always_a, ACTION, PROP, REWARD, Q_HAT)
    assert worse.value < 0 and not should_promote(worse)
    assert not should_promote(Estimate("dr_diff", 0.5, 0.5, -0.48, 1.48, 100))  # better, not surely
    assert should_promote(Estimate("dr_diff", 2.0, 0.5, 1.02, 2.98, 100))
    with pytest.raises(RebuyError, match="paired"):
        should_promote(Estimate("dr", 7.0, 0.5, 6.0, 8.0, 100))


def test_qini_by_hand() -> None:
    tau = np.array([0.9, 0.5, 0.3, 0.1])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    t = np.array([True, False, True, False])
    curve = qini_curve(tau, y, t)
    # k=1: 1; k=2: 1 - 0; k=3: 1 - 0*2/1; k=4: 1 - 1*2/2
    assert curve["qini"].tolist() == pytest.approx([1, 1, 1, 0])
    # gap to the random line (ends at 0): 1, 1, 1, 0 -> mean 0.75 per 2 treated
    assert qini(tau, y, t) == pytest.approx(0.375)
    assert uplift_at_k(tau, y, t, 0.5) == pytest.approx(1.0)
    assert uplift_at_k(tau, y, t, 1.0) == pytest.approx(0.5 - 0.5)
    # reversing the ranking makes it worse than random
    assert qini(-tau, y, t) < 0


def test_arm_effects_by_hand() -> None:
    y = np.array([1, 0, 1, 1, 0, 0, 1, 1])
    arm = np.array(["A", "A", "A", "none", "none", "none", "B", "B"], dtype=object)
    eff = arm_effects(y, arm, "none").set_index("arm")
    assert eff.loc["A", "effect"] == pytest.approx(2 / 3 - 1 / 3)
    assert eff.loc["A", "se"] == pytest.approx(np.sqrt(2) / 3)  # each group: sd sqrt(1/3) / sqrt(3)
    assert eff.loc["B", "effect"] == pytest.approx(1 - 1 / 3)
    # simultaneous intervals are wider than per-arm ones
    assert eff.loc["A", "sim_low"] < eff.loc["A", "low"]


def test_sndr_by_hand() -> None:
    # direct terms 6, 6, 1, 1 (mean 3.5); residuals r − q̂(a_i) = 4, −2, 1, 2 with weights 2, 0, 0, 4/3:
    # Σ w e = 8 + 8/3 = 32/3, Σ w = 10/3, so the normalised correction is 3.2 (DR's is (32/3)/4 = 2.667)
    terms = sndr_terms(PI, ACTION, PROP, REWARD, Q_HAT)
    # linearised: d + 3.2 + w (e − 3.2) / (5/6) = 11.12, 9.2, 4.2, 2.28
    np.testing.assert_allclose(terms, [11.12, 9.2, 4.2, 2.28])
    assert terms.mean() == pytest.approx(6.7)
    assert estimator_terms("dr", PI, ACTION, PROP, REWARD, Q_HAT).mean() == pytest.approx((22 + 8 / 3) / 4)


def test_every_estimator_difference_is_paired() -> None:
    nobody = np.array([[1, 0]] * 4, dtype=float)
    # nobody's SNIPS: w = 0, 2, 0, 4/3 -> (0 + 4) / (10/3) = 1.2; the candidate's is 7.2
    d = difference("snips", PI, nobody, ACTION, PROP, REWARD)
    assert d.value == pytest.approx(7.2 - 1.2) and d.method == "snips_diff"
    # IPS: 6 − (0 + 0 + 0 + 4)/4 = 5
    assert difference("ips", PI, nobody, ACTION, PROP, REWARD).value == pytest.approx(5.0)
    for m in ("dr", "sndr"):
        a = estimator_terms(m, PI, ACTION, PROP, REWARD, Q_HAT)
        b = estimator_terms(m, nobody, ACTION, PROP, REWARD, Q_HAT)
        e = difference(m, PI, nobody, ACTION, PROP, REWARD, Q_HAT)
        assert e.value == pytest.approx(a.mean() - b.mean())
        assert e.se == pytest.approx(np.std(a - b, ddof=1) / 2)
    with pytest.raises(RebuyError, match="reward model"):
        difference("dr", PI, nobody, ACTION, PROP, REWARD)
    with pytest.raises(RebuyError, match="unknown estimator"):
        estimator_terms("magic", PI, ACTION, PROP, REWARD, Q_HAT)


def test_z95_without_scipy() -> None:
    import subprocess
    import sys

    assert pytest.approx(1.959964, abs=1e-6) == Z95
    code = "import sys, training.ope; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
