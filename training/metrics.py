"""Model quality metrics, pure numpy: the same numbers for the model, the baselines and the oracle."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, score))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate − mean prediction| over equal-frequency bins.

    Equal-frequency bins keep every bin populated when predictions crowd near 0 or 1, which is where
    churn and repurchase probabilities live.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    err = 0.0
    for idx in np.array_split(order, min(bins, len(y))):
        if len(idx):
            err += len(idx) * abs(y[idx].mean() - p[idx].mean())
    return float(err / len(y))


def lift_at(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Positive rate in the top `share` by score divided by the overall positive rate."""
    y = np.asarray(y, dtype=float)
    base = y.mean()
    if base == 0:
        return float("nan")
    k = max(1, round(share * len(y)))
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k]
    return float(y[top].mean() / base)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    pc = _clip(p)
    both = y.min() != y.max()
    return {
        "roc_auc": roc_auc(y, pc),
        "pr_auc": float(average_precision_score(y, pc)) if both else float("nan"),
        "brier": float(np.mean((pc - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "ece": expected_calibration_error(y, pc),
        "lift_at_10": lift_at(y, pc, 0.1),
        "positive_rate": float(y.mean()),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    rho = spearmanr(y, pred).statistic if np.std(y) > 0 and np.std(pred) > 0 else float("nan")
    return {
        "mae": float(np.mean(np.abs(y - pred))),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "spearman": float(rho),
        "mean_label": float(y.mean()),
        "mean_prediction": float(pred.mean()),
    }


def _fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann–Whitney AUC with average ranks for ties (equals sklearn's ROC AUC)."""
    pos = y == 1
    n1 = pos.sum()
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_auc_diff(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, *, n: int = 300, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Paired bootstrap of AUC(a) − AUC(b) on the same rows: the point estimate and a percentile CI.

    Resampling rows (not scores) keeps the pairing, so the interval reflects the difference between the
    two models rather than the noise of each.
    """
    y = np.asarray(y)
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for i in range(n):
        idx = rng.integers(0, len(y), len(y))
        diffs[i] = _fast_auc(y[idx], a[idx]) - _fast_auc(y[idx], b[idx])
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return {"diff": _fast_auc(y, a) - _fast_auc(y, b), "ci_low": float(lo), "ci_high": float(hi)}
