"""The policy's invariants: greedy never picks a loss, exploration stays within its share, draws are stable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuy.config import OffersConfig
from training.policy import (
    BudgetUse,
    action_distribution,
    charge,
    decide,
    decide_batch,
    distribution_batch,
    draw,
    draw_batch,
    greedy,
    greedy_batch,
    policy_matrix,
    uniforms,
    within_budget,
)

OFFER_NAMES = ["care_message", "coupon_10pct", "free_shipping", "points_x2", "wake_up_gift"]
margins = st.floats(min_value=-50, max_value=50, allow_nan=False)
estimates_st = st.dictionaries(st.sampled_from(OFFER_NAMES), margins, max_size=5)
allowed_st = st.lists(st.sampled_from([*OFFER_NAMES, "none"]), unique=True, max_size=6)
share_st = st.floats(min_value=0.0, max_value=1.0)


def test_greedy_by_hand() -> None:
    est = {"coupon_10pct": 1.5, "free_shipping": 2.0, "wake_up_gift": -3.0}
    assert greedy(est, ["coupon_10pct", "free_shipping"]) == "free_shipping"
    assert greedy(est, ["coupon_10pct"]) == "coupon_10pct"  # free_shipping not allowed
    assert greedy(est, ["wake_up_gift"]) == "none"  # only a loss is allowed
    assert greedy(est, []) == "none"
    assert greedy({"coupon_10pct": 0.0}, ["coupon_10pct"]) == "none"  # zero is not positive


@given(estimates_st, allowed_st)
def test_greedy_never_picks_a_negative_margin(est: dict, allowed: list) -> None:
    g = greedy(est, allowed)
    if g != "none":
        assert g in allowed and est[g] > 0
        assert est[g] == max(est.get(a, -np.inf) for a in allowed if a != "none")
    else:
        assert all(est.get(a, 0) <= 0 for a in allowed if a != "none")


@settings(max_examples=200)
@given(
    estimates_st,
    allowed_st,
    share_st,
    st.sampled_from(["epsilon", "softmax"]),
    st.floats(min_value=0.01, max_value=100),
)
def test_distribution_sums_to_one_and_respects_share(est, allowed, share, kind, temp) -> None:
    cfg = OffersConfig(exploration=kind, exploration_share=share, softmax_temperature=temp)
    dist = action_distribution(est, allowed, cfg)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert all(p >= 0 for p in dist.values())
    assert set(dist) <= {"none", *allowed}
    g = greedy(est, allowed)
    assert 1.0 - dist[g] <= share + 1e-9


def test_epsilon_distribution_by_hand() -> None:
    cfg = OffersConfig(exploration="epsilon", exploration_share=0.3)
    dist = action_distribution({"coupon_10pct": 1.0, "points_x2": -1.0}, ["coupon_10pct", "points_x2"], cfg)
    # K = 3 candidates: greedy gets 1 − 0.3 + 0.1, the others 0.1 each
    assert dist == pytest.approx({"none": 0.1, "coupon_10pct": 0.8, "points_x2": 0.1})


@given(
    st.dictionaries(st.sampled_from(["none", *OFFER_NAMES]), st.floats(0.01, 1.0), min_size=1),
    st.text(min_size=1, max_size=30),
)
def test_same_decision_id_same_draw(weights: dict, decision_id: str) -> None:
    total = sum(weights.values())
    dist = {k: v / total for k, v in weights.items()}
    a = draw(dist, decision_id)
    assert a in dist and dist[a] > 0
    reordered = dict(reversed(list(dist.items())))
    assert draw(reordered, decision_id) == a


def test_draw_frequencies_follow_the_distribution() -> None:
    dist = {"none": 0.2, "coupon_10pct": 0.8}
    draws = [draw(dist, f"d-{i}") for i in range(4000)]
    share = np.mean([d == "coupon_10pct" for d in draws])
    assert abs(share - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 4000)


def test_decide_records_propensity_of_drawn_action() -> None:
    cfg = OffersConfig(exploration_share=0.2)
    d = decide({"coupon_10pct": 2.0}, ["coupon_10pct"], cfg, "abc")
    assert d.propensity == d.distribution[d.action]
    assert d.greedy == "coupon_10pct"
    assert decide({"coupon_10pct": 2.0}, ["coupon_10pct"], cfg, "abc") == d


def test_budget_count_and_spend() -> None:
    cfg = OffersConfig(budget_count={"coupon_10pct": 2}, budget_spend=5.0)
    used = BudgetUse()
    for _ in range(2):
        assert "coupon_10pct" in within_budget(["coupon_10pct", "wake_up_gift"], used, cfg)
        used = charge(used, "coupon_10pct", cfg)
    assert within_budget(["coupon_10pct"], used, cfg) == []  # count exhausted
    assert "wake_up_gift" in within_budget(["wake_up_gift"], used, cfg)  # 0.04 + 3.0 <= 5
    used = charge(used, "wake_up_gift", cfg)
    assert within_budget(["wake_up_gift", "none"], used, cfg) == ["none"]  # 3.04 + 3.0 > 5


@given(st.lists(st.lists(margins, min_size=3, max_size=3), min_size=1, max_size=20))
def test_batch_greedy_equals_scalar(rows) -> None:
    cols = ["coupon_10pct", "free_shipping", "points_x2"]
    df = pd.DataFrame(rows, columns=cols)
    batch = greedy_batch(df)
    assert list(batch) == [greedy(dict(zip(cols, r, strict=True)), cols) for r in rows]
    pm = policy_matrix(df, ["none", *cols], OffersConfig(exploration_share=0.1))
    assert np.allclose(pm.sum(axis=1), 1.0)


# --- batch forms used by the orchestrator (one pass decides 100k customers at once) -------------------

SORTED_OFFERS = sorted(OFFER_NAMES)
row_st = st.tuples(
    st.lists(st.one_of(margins, st.just(float("nan"))), min_size=5, max_size=5),
    st.lists(st.booleans(), min_size=5, max_size=5),
)


def _scalar_inputs(m: list[float], a: list[bool]) -> tuple[dict[str, float], list[str]]:
    est = {o: v for o, v in zip(SORTED_OFFERS, m, strict=True) if not np.isnan(v)}
    return est, [o for o, ok in zip(SORTED_OFFERS, a, strict=True) if ok and o in est]


@settings(max_examples=150)
@given(
    st.lists(row_st, min_size=1, max_size=12),
    share_st,
    st.sampled_from(["epsilon", "softmax"]),
    st.floats(min_value=0.05, max_value=20),
)
def test_batch_distribution_equals_the_scalar_one_row_by_row(rows, share, kind, temp) -> None:
    cfg = OffersConfig(exploration=kind, exploration_share=share, softmax_temperature=temp)
    m = np.array([r[0] for r in rows])
    a = np.array([r[1] for r in rows])
    probs, cand, g = distribution_batch(m, a, cfg)
    actions = ["none", *SORTED_OFFERS]
    for i, (mi, ai) in enumerate(rows):
        est, allowed = _scalar_inputs(mi, ai)
        dist = action_distribution(est, allowed, cfg)
        assert set(dist) == {actions[j] for j in np.flatnonzero(cand[i])}
        assert actions[g[i]] == greedy(est, allowed)
        for j, name in enumerate(actions):
            assert probs[i, j] == pytest.approx(dist.get(name, 0.0), abs=1e-12)


@given(
    st.lists(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), min_size=1, max_size=20),
    st.lists(st.text(min_size=1, max_size=12), min_size=20, max_size=20, unique=True),
)
def test_batch_draw_equals_draw_and_never_picks_zero_mass(weights, ids) -> None:
    w = np.array(weights)
    w[w.sum(axis=1) == 0, 0] = 1.0
    p = w / w.sum(axis=1, keepdims=True)
    names = ["a", "b", "c", "d"]
    got = draw_batch(p, ids[: len(p)])
    for i in range(len(p)):
        assert p[i, got[i]] > 0
        assert names[got[i]] == draw(dict(zip(names, p[i], strict=True)), ids[i])


def test_uniform_is_the_documented_hash_of_the_decision_id() -> None:
    import hashlib

    word = int.from_bytes(hashlib.sha256(b"d-42").digest()[:8], "big")
    assert uniforms(["d-42"])[0] == (word >> 11) / 2**53
    assert uniforms(["x", "d-42"])[1] == uniforms(["d-42"])[0]  # independent of the batch around it


@settings(max_examples=150)
@given(
    st.lists(row_st, min_size=1, max_size=25),
    st.dictionaries(st.sampled_from(OFFER_NAMES), st.integers(0, 4), max_size=3),
    st.one_of(st.none(), st.floats(0.0, 8.0)),
    st.integers(0, 10_000),
)
def test_decide_batch_equals_deciding_one_by_one_with_the_budget(rows, counts, spend, salt) -> None:
    cfg = OffersConfig(exploration_share=0.3, budget_count=counts, budget_spend=spend)
    m = np.array([r[0] for r in rows])
    a = np.array([r[1] for r in rows])
    ids = [f"{salt}-{i}" for i in range(len(rows))]
    got = decide_batch(np.nan_to_num(m, nan=0.0), a & ~np.isnan(m), cfg, ids)
    actions = ["none", *SORTED_OFFERS]
    used = BudgetUse()
    for i, (mi, ai) in enumerate(rows):
        est, allowed = _scalar_inputs(mi, ai)
        within = within_budget(["none", *allowed], used, cfg)
        removed = {o for o in allowed if o not in within}
        d = decide(est, within, cfg, ids[i])
        used = charge(used, d.action, cfg)
        assert actions[got.action[i]] == d.action
        assert got.probs[i, got.action[i]] == pytest.approx(d.propensity, abs=1e-12)
        assert {SORTED_OFFERS[j] for j in np.flatnonzero(got.over_budget[i])} == removed
    sent = [actions[j] for j in got.action if j > 0]
    for offer, cap in counts.items():
        assert sent.count(offer) <= cap
    if spend is not None:
        assert sum(cfg.catalogue[o].cost for o in sent) <= spend + 1e-9
