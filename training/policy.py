"""The offer policy: one library function used by serving, the orchestrator and off-policy evaluation.

Serving estimates, the orchestrator decides: `greedy` picks the offer with the highest expected incremental
margin among what consent, caps and budget still allow (or `none` when nothing pays), `action_distribution`
adds exploration so future models can still be learned and evaluated off-policy, and `draw` makes the final
choice reproducible from the decision id (a crash and rerun draws the same action). The batch forms give the
same answers on arrays, for evaluation and benchmarks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
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


def uniforms(decision_ids: Sequence[str]) -> np.ndarray:
    """One uniform number in [0, 1) per decision id, from sha256 (53 bits): the same in every process.

    sha256, not hash(): Python's str hash is salted per process, so a rerun would draw differently. One
    hash per id and no generator object keeps 100k draws in a fraction of a second.
    """
    digests = b"".join(hashlib.sha256(d.encode("utf-8")).digest()[:8] for d in decision_ids)
    words = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    return (words >> np.uint64(11)).astype(np.float64) / float(2**53)


def draw_batch(probs: np.ndarray, decision_ids: Sequence[str]) -> np.ndarray:
    """Column index drawn per row of an (n × actions) probability matrix, seeded by each row's decision id.

    Inverse-CDF on the row's cumulative sums; a column with zero mass is never drawn (a float edge next to
    one steps back to the last column with mass). `draw` is this on one row, so both always agree.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(decision_ids):
        raise RebuyError(
            f"draw_batch needs one probability row per decision id, got {p.shape} and {len(decision_ids)} ids"
        )
    if not len(p):
        return np.zeros(0, dtype=np.int64)
    cum = np.cumsum(p, axis=1)
    target = uniforms(decision_ids) * cum[:, -1]
    idx = np.minimum((cum <= target[:, None]).sum(axis=1), p.shape[1] - 1)
    cols = np.arange(p.shape[1])
    return np.where((p > 0) & (cols[None, :] <= idx[:, None]), cols[None, :], -1).max(axis=1)


def draw(distribution: Mapping[str, float], decision_id: str) -> str:
    """One action from `distribution`, seeded by a stable hash of the decision id (`draw_batch` on one row)."""
    if not distribution:
        raise RebuyError("cannot draw from an empty action distribution")
    # `none` first, then sorted: the column order of the batch forms, and the same in any dict order
    keys = sorted(distribution, key=lambda k: (k != NONE, k))
    p = np.array([distribution[k] for k in keys], dtype=float)
    if (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise RebuyError(f"action distribution must be non-negative and sum to 1, got {dict(distribution)}")
    return keys[int(draw_batch(p[None, :], [decision_id])[0])]


def distribution_batch(
    margins: np.ndarray, allowed: np.ndarray, offers: OffersConfig, explore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`action_distribution` on arrays, for a pass of 100k customers at once.

    `margins` and `allowed` are (n × K) over K offers **in sorted name order** (`none` excluded). Returns
    (probabilities, candidates, greedy) over the K + 1 actions `none` + offers, `none` in column 0:
    candidates marks `none` and the allowed offers with a finite margin (the keys `action_distribution`
    would return), greedy is the greedy column. Same rules as the scalar form, row by row. `explore`, when
    given, is each row's own exploration share (the orchestrator explores less among recently contacted
    customers, `exploration_shares`); else every row uses `offers.exploration_share`.
    """
    m = np.asarray(margins, dtype=np.float64)
    n = len(m)
    if explore is None:
        eps_rows = np.full(n, float(offers.exploration_share))
    else:
        eps_rows = np.asarray(explore, dtype=np.float64).reshape(n)
    if ((eps_rows < 0.0) | (eps_rows > 1.0) | ~np.isfinite(eps_rows)).any():
        raise RebuyError(f"exploration shares must be in [0, 1], got {sorted(set(eps_rows.tolist()))[:5]}")
    eps = eps_rows[:, None]
    cand = np.column_stack([np.ones(n, bool), np.asarray(allowed, bool) & np.isfinite(m)])
    vals = np.column_stack([np.zeros(n), np.where(cand[:, 1:], m, 0.0)])
    g = np.argmax(
        np.where(cand, vals, -np.inf), axis=1
    )  # first max: `none` wins ties at 0, then sorted order
    rows = np.arange(n)
    onehot = np.zeros_like(vals)
    onehot[rows, g] = 1.0
    k = cand.sum(axis=1)
    if not (eps_rows > 0.0).any():
        return onehot, cand, g
    if offers.exploration == "epsilon":
        dist = np.where(cand, eps / k[:, None], 0.0)
        dist[rows, g] += 1.0 - eps_rows
    else:
        temp = max(float(offers.softmax_temperature), 1e-12)
        v = np.where(cand, vals / temp, -np.inf)
        e = np.where(cand, np.exp(v - v.max(axis=1, keepdims=True)), 0.0)
        p = e / e.sum(axis=1, keepdims=True)
        off = 1.0 - p[rows, g]
        lam = np.where(off <= eps_rows, 1.0, eps_rows / np.where(off > 0, off, 1.0))
        dist = lam[:, None] * p
        dist[rows, g] += 1.0 - lam
    dist = np.where(((k == 1) | (eps_rows == 0.0))[:, None], onehot, dist)
    return dist / dist.sum(axis=1, keepdims=True), cand, g


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


@dataclass(frozen=True)
class BatchDecisions:
    """`decide_batch`'s answer: per row the drawn column (0 = `none`), the probability matrix over `none` +
    offers, the candidate mask, and which allowed offers the budget took away."""

    action: np.ndarray
    probs: np.ndarray
    candidates: np.ndarray
    over_budget: np.ndarray


def decide_batch(
    margins: np.ndarray,
    allowed: np.ndarray,
    offers: OffersConfig,
    decision_ids: Sequence[str],
    explore: np.ndarray | None = None,
) -> BatchDecisions:
    """greedy → distribution → seeded draw for rows **in processing order**, spending the budget as it goes.

    The same result as calling `within_budget`, `decide` and `charge` row by row (the orchestrator's order
    is best margin first), in at most K + 1 vectorised sweeps: a sweep draws every remaining row with what
    is allowed, finds the first row where some allowed offer would no longer fit the budget spent by the
    rows before it, keeps the rows before, and removes the offers that no longer fit from that row on
    (spend and counts only grow, so an offer that does not fit never fits again). Columns of `margins` and
    `allowed` are the offers in sorted name order; `explore` is each row's exploration share (see
    `distribution_batch`).
    """
    names = sorted(offers.catalogue)
    names.remove(NONE)
    m = np.asarray(margins, dtype=np.float64)
    allow = np.asarray(allowed, dtype=bool).copy()
    n, k = m.shape if m.ndim == 2 else (0, 0)
    if k and k != len(names):
        raise RebuyError(f"decide_batch needs one column per catalogue offer {names}, got {k}")
    cap = np.array([offers.budget_count.get(o, np.inf) for o in names], dtype=np.float64)
    cost = np.array([offers.catalogue[o].cost for o in names], dtype=np.float64)
    spend_cap = np.inf if offers.budget_spend is None else float(offers.budget_spend) + 1e-12
    budgeted = bool(np.isfinite(cap).any() or np.isfinite(spend_cap))
    if budgeted and (cost < 0).any():
        raise RebuyError("an offer budget needs non-negative offer costs in the catalogue")
    action = np.zeros(n, dtype=np.int64)
    probs = np.zeros((n, k + 1))
    cand = np.zeros((n, k + 1), dtype=bool)
    gone = np.zeros(k, dtype=bool)  # offers the budget has run out of, from row `start` on
    over = np.zeros((n, k), dtype=bool)
    counts, spend, start = np.zeros(k), 0.0, 0
    ids = list(decision_ids)
    while start < n:
        over[start:] = allow[start:] & gone
        p, c, _ = distribution_batch(
            m[start:], allow[start:] & ~gone, offers, None if explore is None else np.asarray(explore)[start:]
        )
        a = draw_batch(p, ids[start:])
        stop = len(a)
        if budgeted:
            sent = np.zeros((len(a), k))
            sent[a > 0, a[a > 0] - 1] = 1.0
            before = counts + np.cumsum(sent, axis=0) - sent
            spend_before = spend + np.cumsum(sent @ cost) - sent @ cost
            fits = (before + 1 <= cap) & (spend_before[:, None] + cost[None, :] <= spend_cap)
            bad = np.flatnonzero((allow[start:] & ~gone & ~fits).any(axis=1))
            if len(bad):
                stop = int(bad[0])
                gone |= ~fits[stop]
            counts = counts + sent[:stop].sum(axis=0)
            spend += float(sent[:stop].sum(axis=0) @ cost)
        action[start : start + stop] = a[:stop]
        probs[start : start + stop] = p[:stop]
        cand[start : start + stop] = c[:stop]
        start += stop
    return BatchDecisions(action, probs, cand, over)


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
