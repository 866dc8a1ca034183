"""The offer policy: one library function used by serving, the orchestrator and off-policy evaluation.

Serving estimates, the orchestrator decides: `greedy` picks the offer with the highest expected incremental
margin among what consent, caps and budget still allow (or `none` when nothing pays), `action_distribution`
adds exploration so future models can still be learned and evaluated off-policy, and `draw` makes the final
choice reproducible from the decision id (a crash and rerun draws the same action). The batch forms give the
same answers on arrays, for evaluation and benchmarks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rebuy.config import OffersConfig
from rebuy.errors import RebuyError

NONE = "none"


def _candidates(allowed: Iterable[str]) -> list[str]:
    """`none` first (always a candidate), then the allowed offers in a stable (sorted) order."""
    return [NONE, *sorted({a for a in allowed if a != NONE})]


def greedy(estimates: Mapping[str, float], allowed: Iterable[str]) -> str:
    """Highest expected incremental margin among `allowed`; `none` unless some allowed offer is strictly positive.

    An allowed offer without an estimate is never chosen (nothing says it pays). Ties go to the offer that
    sorts first, so the choice does not depend on dict order.
    """
    best, best_value = NONE, 0.0
    for offer in _candidates(allowed)[1:]:
        value = estimates.get(offer)
        if value is None or not np.isfinite(value):
            continue
        if value > best_value:
            best, best_value = offer, float(value)
    return best


def action_distribution(
    estimates: Mapping[str, float], allowed: Iterable[str], offers: OffersConfig
) -> dict[str, float]:
    """Probabilities over `none` + allowed offers; sums to 1; at most `offers.exploration_share` off greedy.

    epsilon: the greedy action gets 1 − ε + ε/K and every other candidate ε/K (off-greedy mass ε(K−1)/K ≤ ε).
    softmax: probabilities ∝ exp(margin / temperature) (`none` has margin 0), then mixed with the greedy
    one-hot just enough that the off-greedy mass is at most ε. Offers without a finite estimate get no mass.
    """
    eps = float(offers.exploration_share)
    if not 0.0 <= eps <= 1.0:
        raise RebuyError(f"offers.exploration_share must be in [0, 1], got {eps}")
    cands = [c for c in _candidates(allowed) if c == NONE or np.isfinite(estimates.get(c, np.nan))]
    g = greedy(estimates, cands)
    k = len(cands)
    if k == 1 or eps == 0.0:
        return {c: float(c == g) for c in cands}
    if offers.exploration == "epsilon":
        dist = {c: eps / k for c in cands}
        dist[g] += 1.0 - eps
    else:
        temp = max(float(offers.softmax_temperature), 1e-12)
        v = np.array([0.0 if c == NONE else float(estimates[c]) for c in cands]) / temp
        p = np.exp(v - v.max())
        p /= p.sum()
        off = 1.0 - p[cands.index(g)]
        lam = 1.0 if off <= eps else eps / off
        dist = {c: float(lam * pc) for c, pc in zip(cands, p, strict=True)}
        dist[g] += 1.0 - lam
    total = sum(dist.values())
    return {c: p / total for c, p in dist.items()}


def _seed(decision_id: str) -> int:
    # sha256, not hash(): Python's str hash is salted per process, so a rerun would draw differently.
    return int.from_bytes(hashlib.sha256(decision_id.encode("utf-8")).digest()[:8], "big")


def draw(distribution: Mapping[str, float], decision_id: str) -> str:
    """One action from `distribution`, from a generator seeded by a stable hash of the decision id."""
    if not distribution:
        raise RebuyError("cannot draw from an empty action distribution")
    keys = sorted(distribution)  # the same distribution in any dict order draws the same action
    p = np.array([distribution[k] for k in keys], dtype=float)
    if (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise RebuyError(f"action distribution must be non-negative and sum to 1, got {dict(distribution)}")
    u = np.random.default_rng(_seed(decision_id)).random()
    idx = int(np.searchsorted(np.cumsum(p), u * p.sum(), side="right"))
    idx = min(idx, len(keys) - 1)
    while p[idx] == 0.0:  # u landed on a float edge next to a zero-mass action
        idx -= 1
    return keys[idx]


@dataclass(frozen=True)
class OfferDecision:
    """What the decision log records: the action, its propensity, the whole distribution and the greedy one."""

    action: str
    propensity: float
    greedy: str
    distribution: dict[str, float] = field(default_factory=dict)


def decide(
    estimates: Mapping[str, float], allowed: Iterable[str], offers: OffersConfig, decision_id: str
) -> OfferDecision:
    """greedy → distribution → seeded draw, in one call (what the orchestrator does per customer)."""
    allowed = list(allowed)
    dist = action_distribution(estimates, allowed, offers)
    action = draw(dist, decision_id)
    return OfferDecision(action, dist[action], greedy(estimates, allowed), dist)


# --- budget --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetUse:
    """Sends and spend so far in this run; immutable, `charge` returns the next state."""

    counts: Mapping[str, int] = field(default_factory=dict)
    spend: float = 0.0


def within_budget(allowed: Iterable[str], used: BudgetUse, offers: OffersConfig) -> list[str]:
    """The allowed offers that one more send would keep within `budget_count` and `budget_spend`.

    Spend counts the fixed cost per send from the catalogue (redemption costs are not known at send time).
    """
    out = []
    for offer in allowed:
        if offer == NONE:
            out.append(offer)
            continue
        cap = offers.budget_count.get(offer)
        if cap is not None and used.counts.get(offer, 0) + 1 > cap:
            continue
        cost = offers.catalogue[offer].cost if offer in offers.catalogue else 0.0
        if offers.budget_spend is not None and used.spend + cost > offers.budget_spend + 1e-12:
            continue
        out.append(offer)
    return out


def charge(used: BudgetUse, action: str, offers: OffersConfig) -> BudgetUse:
    """The budget state after sending `action` (`none` costs nothing)."""
    if action == NONE:
        return used
    counts = dict(used.counts)
    counts[action] = counts.get(action, 0) + 1
    cost = offers.catalogue[action].cost if action in offers.catalogue else 0.0
    return BudgetUse(counts, used.spend + cost)


# --- batch forms (evaluation) ---------------------------------------------------------------------------


def greedy_batch(margins: pd.DataFrame, allowed: pd.DataFrame | None = None) -> np.ndarray:
    """`greedy` per row of a (customers × offers) frame of incremental margins; `allowed` is a boolean mask."""
    cols = sorted(c for c in margins.columns if c != NONE)
    vals = margins[cols].to_numpy(dtype=float, copy=True)
    if allowed is not None:
        vals[~allowed[cols].to_numpy(dtype=bool)] = -np.inf
    vals[~np.isfinite(vals)] = -np.inf
    full = np.column_stack([np.zeros(len(vals)), vals])  # `none` first wins ties at 0
    choice = np.argmax(full, axis=1)
    names = np.array([NONE, *cols], dtype=object)
    return names[choice]


def policy_matrix(
    margins: pd.DataFrame,
    actions: list[str],
    offers: OffersConfig | None = None,
    allowed: pd.DataFrame | None = None,
) -> np.ndarray:
    """π(a | x) as an (n × len(actions)) matrix: greedy one-hot, or with exploration when `offers` is given."""
    if offers is None:
        g = greedy_batch(margins, allowed)
        return (g[:, None] == np.array(actions, dtype=object)[None, :]).astype(float)
    cols = [c for c in margins.columns if c != NONE]
    mask = (
        allowed[cols].to_numpy(dtype=bool)
        if allowed is not None
        else np.ones((len(margins), len(cols)), bool)
    )
    vals = margins[cols].to_numpy(dtype=float)
    out = np.zeros((len(margins), len(actions)))
    pos = {a: i for i, a in enumerate(actions)}
    for r in range(len(margins)):
        est = dict(zip(cols, vals[r], strict=True))
        allow = [c for c, m in zip(cols, mask[r], strict=True) if m]
        for a, p in action_distribution(est, allow, offers).items():
            out[r, pos[a]] = p
    return out


def constant_matrix(n: int, actions: list[str], action: str) -> np.ndarray:
    """π for "everyone gets `action`"."""
    out = np.zeros((n, len(actions)))
    out[:, actions.index(action)] = 1.0
    return out
