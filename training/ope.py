"""Off-policy evaluation and uplift metrics from logged randomized decisions, pure numpy.

A policy is valued on data another policy collected: IPS reweights logged rewards by π(a|x)/p(a|x),
SNIPS normalises those weights (less variance, small bias), and the doubly robust estimator adds a
reward model's prediction so the weights only correct its error. Every value carries a normal-theory
confidence interval from the per-row terms (each estimator is a mean of independent terms, or a ratio
of means for SNIPS, whose interval comes from the delta method). Qini curves and uplift at top k%
say whether an uplift model ranks the persuadable customers first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from rebuy.errors import RebuyError

# normal quantiles from the standard library: scipy.stats costs 1-3 s of import in every CLI process
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Estimate:
    """A policy value (or difference) with its standard error and two-sided interval."""

    method: str
    value: float
    se: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _from_terms(method: str, terms: np.ndarray, z: float = Z95) -> Estimate:
    n = len(terms)
    if n == 0:
        raise RebuyError(f"{method}: no logged rows to evaluate on")
    value = float(np.mean(terms))
    se = float(np.std(terms, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Estimate(method, value, se, value - z * se, value + z * se, n)


def _check(propensity: np.ndarray, *arrays: np.ndarray) -> None:
    n = len(propensity)
    if any(len(a) != n for a in arrays):
        raise RebuyError("off-policy evaluation: logged arrays have different lengths")
    if n and (not np.all(np.isfinite(propensity)) or propensity.min() <= 0 or propensity.max() > 1):
        raise RebuyError("off-policy evaluation: logged propensities must lie in (0, 1]")


def importance_weights(pi: np.ndarray, action: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """π(a_i | x_i) / p_i for the logged action `action` (column indices into `pi`)."""
    pi = np.asarray(pi, dtype=float)
    action = np.asarray(action, dtype=int)
    propensity = np.asarray(propensity, dtype=float)
    _check(propensity, action, pi)
    return pi[np.arange(len(action)), action] / propensity


def ips(pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> Estimate:
    """Inverse propensity scoring: mean of w_i r_i. Unbiased when propensities are right; high variance."""
    w = importance_weights(pi, action, propensity)
    return _from_terms("ips", w * np.asarray(reward, dtype=float))


def snips(pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> Estimate:
    """Self-normalised IPS: Σ w r / Σ w, interval by the delta method (influence w (r − V) / mean w)."""
    w = importance_weights(pi, action, propensity)
    r = np.asarray(reward, dtype=float)
    if w.sum() <= 0:
        raise RebuyError("snips: the evaluated policy never takes a logged action; no overlap to learn from")
    value = float((w * r).sum() / w.sum())
    infl = w * (r - value) / w.mean()
    est = _from_terms("snips", infl)
    return Estimate("snips", value, est.se, value - Z95 * est.se, value + Z95 * est.se, est.n)


def dr_terms(
    pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q_hat: np.ndarray
) -> np.ndarray:
    """Per-row doubly robust terms Σ_a π(a|x) q̂(x, a) + w (r − q̂(x, a_i))."""
    pi = np.asarray(pi, dtype=float)
    q_hat = np.asarray(q_hat, dtype=float)
    if q_hat.shape != pi.shape:
        raise RebuyError(f"doubly robust: reward model has shape {q_hat.shape}, policy {pi.shape}")
    action = np.asarray(action, dtype=int)
    w = importance_weights(pi, action, propensity)
    rows = np.arange(len(action))
    return (pi * q_hat).sum(axis=1) + w * (np.asarray(reward, dtype=float) - q_hat[rows, action])


def dr(
    pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q_hat: np.ndarray
) -> Estimate:
    """Doubly robust value: unbiased if either the propensities or the reward model are right."""
    return _from_terms("dr", dr_terms(pi, action, propensity, reward, q_hat))


def dr_difference(
    pi_a: np.ndarray,
    pi_b: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q_hat: np.ndarray,
) -> Estimate:
    """V(π_a) − V(π_b) on the same rows: paired, so far tighter than comparing two separate intervals."""
    diff = dr_terms(pi_a, action, propensity, reward, q_hat) - dr_terms(
        pi_b, action, propensity, reward, q_hat
    )
    return _from_terms("dr_diff", diff)


def dr_difference_vs_logged(
    pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q_hat: np.ndarray
) -> Estimate:
    """V(π) − V(logging policy) on the same rows; the logging policy's value is its own mean reward."""
    return _from_terms("dr_diff", dr_terms(pi, action, propensity, reward, q_hat) - np.asarray(reward, float))


def sndr_terms(
    pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q_hat: np.ndarray
) -> np.ndarray:
    """Per-row terms of the self-normalised DR: mean Σ_a π q̂ + Σ w (r − q̂) / Σ w.

    The correction is divided by the realised weight total instead of n, as SNIPS does: when the
    policy's actions happen to be over- or under-represented among the logged rows, the correction is not
    scaled with that accident (less variance; a bias of order 1/n). The terms are the linearised influence
    d_i + c + w_i (e_i − c) / mean w, whose mean is the estimate itself, so paired differences and
    intervals work as for the other estimators.
    """
    pi = np.asarray(pi, dtype=float)
    q_hat = np.asarray(q_hat, dtype=float)
    if q_hat.shape != pi.shape:
        raise RebuyError(f"doubly robust: reward model has shape {q_hat.shape}, policy {pi.shape}")
    action = np.asarray(action, dtype=int)
    w = importance_weights(pi, action, propensity)
    if w.sum() <= 0:
        raise RebuyError("sndr: the evaluated policy never takes a logged action; no overlap to learn from")
    e = np.asarray(reward, dtype=float) - q_hat[np.arange(len(action)), action]
    c = float((w * e).sum() / w.sum())
    return (pi * q_hat).sum(axis=1) + c + w * (e - c) / w.mean()


def snips_terms(pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Per-row linearised SNIPS terms V + w (r − V) / mean w (mean = the SNIPS value)."""
    w = importance_weights(pi, action, propensity)
    r = np.asarray(reward, dtype=float)
    if w.sum() <= 0:
        raise RebuyError("snips: the evaluated policy never takes a logged action; no overlap to learn from")
    v = float((w * r).sum() / w.sum())
    return v + w * (r - v) / w.mean()


ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr", "sndr")


def estimator_terms(
    method: str,
    pi: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q_hat: np.ndarray | None = None,
) -> np.ndarray:
    """Per-row terms of one estimator (`ESTIMATORS`); their mean is the value."""
    if method == "ips":
        return importance_weights(pi, action, propensity) * np.asarray(reward, dtype=float)
    if method == "snips":
        return snips_terms(pi, action, propensity, reward)
    if q_hat is None:
        raise RebuyError(f"{method} needs a reward model (q_hat)")
    if method == "dr":
        return dr_terms(pi, action, propensity, reward, q_hat)
    if method == "sndr":
        return sndr_terms(pi, action, propensity, reward, q_hat)
    raise RebuyError(f"unknown estimator {method!r}; known: {list(ESTIMATORS)}")


def difference(
    method: str,
    pi_a: np.ndarray,
    pi_b: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q_hat: np.ndarray | None = None,
) -> Estimate:
    """V(π_a) − V(π_b) by `method` on the same rows, paired (per-row term differences)."""
    d = estimator_terms(method, pi_a, action, propensity, reward, q_hat) - estimator_terms(
        method, pi_b, action, propensity, reward, q_hat
    )
    return _from_terms(f"{method}_diff", d)


def evaluate(
    pi: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q_hat: np.ndarray | None
) -> dict[str, Estimate]:
    """IPS, SNIPS and (when a reward model is given) DR of one policy."""
    out = {"ips": ips(pi, action, propensity, reward), "snips": snips(pi, action, propensity, reward)}
    if q_hat is not None:
        out["dr"] = dr(pi, action, propensity, reward, q_hat)
    return out


def should_promote(candidate_minus_current: Estimate) -> bool:
    """Promote only if the candidate's DR lower bound beats the current policy: the lower 95% bound of the
    paired DR difference V(candidate) − V(current), valued on the same held-out rows, must be above 0."""
    if candidate_minus_current.method != "dr_diff":
        raise RebuyError("promotion needs the paired DR difference (training.ope.dr_difference)")
    return bool(candidate_minus_current.low > 0)


# --- per-arm effects -------------------------------------------------------------------------------------


def arm_effects(
    y: np.ndarray, arm: np.ndarray, control: str, propensity: np.ndarray | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Each arm's mean outcome minus control's, with a per-arm and a simultaneous (Bonferroni) interval.

    Means are Hájek (inverse-propensity weighted within arm), which equals the plain mean when the
    propensity is constant within an arm; arms are independent groups, so variances add.
    """
    y = np.asarray(y, dtype=float)
    arm = np.asarray(arm, dtype=object)
    w_all = 1.0 / np.asarray(propensity, dtype=float) if propensity is not None else np.ones(len(y))

    def mean_se(mask: np.ndarray) -> tuple[float, float, int]:
        w, v = w_all[mask], y[mask]
        m = float((w * v).sum() / w.sum())
        n = int(mask.sum())
        se = float(np.sqrt((w**2 * (v - m) ** 2).sum() * n / max(n - 1, 1)) / w.sum())
        return m, se, n

    if not (arm == control).any():
        raise RebuyError(f"arm effects: no rows in the control arm {control!r}")
    mc, sc, nc = mean_se(arm == control)
    arms = sorted(a for a in set(arm.tolist()) if a != control)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    z_sim = NormalDist().inv_cdf(1 - alpha / (2 * max(len(arms), 1)))
    rows = []
    for a in arms:
        ma, sa, na = mean_se(arm == a)
        eff, se = ma - mc, float(np.hypot(sa, sc))
        rows.append(
            {
                "arm": a,
                "n": na,
                "n_control": nc,
                "mean": ma,
                "mean_control": mc,
                "effect": eff,
                "se": se,
                "low": eff - z * se,
                "high": eff + z * se,
                "sim_low": eff - z_sim * se,
                "sim_high": eff + z_sim * se,
            }
        )
    return pd.DataFrame(rows)


# --- uplift ranking metrics ------------------------------------------------------------------------------


def qini_curve(
    uplift: np.ndarray, y: np.ndarray, treated: np.ndarray, weights: np.ndarray | None = None
) -> pd.DataFrame:
    """Qini curve: customers sorted by predicted uplift (highest first, stable), and at each cut k

    qini(k) = S_T(k) − S_C(k) · N_T(k) / N_C(k)   (incremental outcomes among the treated in the top k)
    uplift(k) = S_T(k)/N_T(k) − S_C(k)/N_C(k)      (cumulative uplift; NaN while a group is empty)

    S and N are (weighted) sums of outcomes and counts; weights 1/propensity make it valid when the
    treatment probability varies by customer.
    """
    uplift = np.asarray(uplift, dtype=float)
    order = np.argsort(-uplift, kind="stable")
    y = np.asarray(y, dtype=float)[order]
    t = np.asarray(treated, dtype=bool)[order]
    w = (np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float))[order]
    nt, nc = np.cumsum(w * t), np.cumsum(w * ~t)
    st, sc = np.cumsum(w * y * t), np.cumsum(w * y * ~t)
    with np.errstate(invalid="ignore", divide="ignore"):
        qini = st - np.where(nc > 0, sc * nt / nc, 0.0)
        cum = np.where((nt > 0) & (nc > 0), st / nt - sc / nc, np.nan)
    k = np.arange(1, len(y) + 1)
    return pd.DataFrame(
        {"k": k, "fraction": k / len(y), "n_treated": nt, "n_control": nc, "qini": qini, "uplift": cum}
    )


def qini_auc(curve: pd.DataFrame) -> float:
    """Mean gap between the Qini curve and the random-targeting line, per treated customer (0 = random)."""
    if curve.empty:
        return float("nan")
    q = curve["qini"].to_numpy()
    frac = curve["fraction"].to_numpy()
    gap = q - frac * q[-1]
    n_treated = float(curve["n_treated"].iloc[-1])
    return float(gap.mean() / n_treated) if n_treated > 0 else float("nan")


def qini(uplift: np.ndarray, y: np.ndarray, treated: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Qini AUC of a ranking (see `qini_curve` and `qini_auc`)."""
    return qini_auc(qini_curve(uplift, y, treated, weights))


def uplift_at_k(
    uplift: np.ndarray, y: np.ndarray, treated: np.ndarray, k: float, weights: np.ndarray | None = None
) -> float:
    """Treated minus control mean outcome among the top `k` share by predicted uplift (NaN if a group is empty)."""
    if not 0 < k <= 1:
        raise RebuyError(f"uplift at k: k must be in (0, 1], got {k}")
    curve = qini_curve(uplift, y, treated, weights)
    top = max(int(np.ceil(k * len(curve))), 1)
    return float(curve["uplift"].iloc[top - 1]) if len(curve) else float("nan")
