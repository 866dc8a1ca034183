"""Probability calibration stored as plain data, so serving applies exactly the transform training fitted.

A calibrator is a JSON-able dict: {"method": "isotonic", "x": [...], "y": [...], "tie_break": 1e-6}
(piecewise-linear interpolation, clipped at the ends — what sklearn's IsotonicRegression predicts — plus
a tiny slope on the raw score that keeps the booster's ranking inside isotonic's flat steps) or
{"method": "platt", "a": .., "b": ..} (sigmoid of a·logit(p)+b), or {"method": "identity"}.
`select_calibrator` may add a "selection" entry (the held-out scores that chose the method); appliers
ignore it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression

from rebuy.errors import RebuyError

# below this many held-out rows isotonic steps overfit; a two-parameter Platt fit is steadier
MIN_ISOTONIC_ROWS = 1000
# isotonic regression is flat between its steps, so it ties customers the booster ranked apart and costs
# AUC (measured 0.003-0.004 on simulated shops); this slope on the raw score breaks the ties in the
# booster's order while moving no probability by more than 1e-6
TIE_BREAK = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_calibrator(p: np.ndarray, y: np.ndarray, method: str = "auto") -> dict[str, Any]:
    """Fit on a held-out fold (never the rows the booster was trained or early-stopped on)."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(p) != len(y) or len(p) == 0:
        raise RebuyError(
            f"calibration needs matching, non-empty predictions and labels ({len(p)} vs {len(y)})"
        )
    if method == "auto":
        method = "isotonic" if len(p) >= MIN_ISOTONIC_ROWS else "platt"
    if y.min() == y.max():
        return {"method": "identity"}
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return {
            "method": "isotonic",
            "x": iso.X_thresholds_.tolist(),
            "y": iso.y_thresholds_.tolist(),
            "tie_break": TIE_BREAK,
        }
    if method == "platt":
        z = _logit(p)

        def nll(ab: np.ndarray) -> float:
            q = np.clip(1 / (1 + np.exp(-(ab[0] * z + ab[1]))), 1e-12, 1 - 1e-12)
            return float(-np.sum(y * np.log(q) + (1 - y) * np.log(1 - q)))

        res = minimize(nll, x0=np.array([1.0, 0.0]), method="L-BFGS-B")
        return {"method": "platt", "a": float(res.x[0]), "b": float(res.x[1])}
    raise RebuyError(f"unknown calibration method {method!r}; use isotonic, platt or auto")


def _log_loss(y: np.ndarray, q: np.ndarray) -> float:
    q = np.clip(q, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def select_calibrator(
    folds: list[tuple[np.ndarray, np.ndarray]], methods: tuple[str, ...] = ("isotonic", "platt")
) -> dict[str, Any]:
    """Choose isotonic or Platt by cross-fitted log loss over held-out folds, then refit on all of them.

    Each fold is (raw scores, labels) of rows the booster never trained on (e.g. customers of the
    validation cutoffs split in two): every method is fitted on all folds but one and scored on that
    one, so the choice is made on rows its fit never saw. Isotonic wins on large folds (it corrects any
    monotone distortion); Platt on small ones (two parameters cannot overfit). The final fit uses every
    row, which roughly doubles the rows of the former one-fold fit. Log loss, not ECE, chooses: it is a
    proper score, while ECE on a few bins can prefer a calibrator that is wrong between the bins.
    """
    folds = [(np.asarray(p, dtype=float), np.asarray(y, dtype=float)) for p, y in folds if len(p)]
    if not folds:
        raise RebuyError("calibration needs at least one non-empty fold of held-out predictions")
    p_all = np.concatenate([p for p, _ in folds])
    y_all = np.concatenate([y for _, y in folds])
    if len(folds) < 2:
        return fit_calibrator(p_all, y_all)
    scores: dict[str, float] = {}
    for method in methods:
        if method == "isotonic" and min(len(p) for p, _ in folds) * (len(folds) - 1) < MIN_ISOTONIC_ROWS:
            continue  # too few rows to fit isotonic steps on any fold's complement
        loss, n = 0.0, 0
        for k, (p_out, y_out) in enumerate(folds):
            rest = [f for j, f in enumerate(folds) if j != k]
            cal = fit_calibrator(
                np.concatenate([p for p, _ in rest]), np.concatenate([y for _, y in rest]), method
            )
            loss += _log_loss(y_out, apply_calibrator(cal, p_out)) * len(p_out)
            n += len(p_out)
        scores[method] = loss / n
    if not scores:
        return fit_calibrator(p_all, y_all)
    best = min(scores, key=lambda m: scores[m])
    cal = fit_calibrator(p_all, y_all, best)
    if cal["method"] != "identity":
        cal["selection"] = {"cross_fitted_log_loss": scores, "rows": len(p_all), "folds": len(folds)}
    return cal


def apply_calibrator(cal: dict[str, Any], p: np.ndarray) -> np.ndarray:
    """numpy in, numpy out: the serving hot path calls this on every prediction."""
    method = cal.get("method")
    if method == "identity":
        return np.asarray(p, dtype=float)
    if method == "isotonic":
        p = np.asarray(p, dtype=float)
        out = np.interp(p, cal["x"], cal["y"])
        # calibrators stored before the tie-break existed apply as they were fitted
        slope = float(cal.get("tie_break", 0.0))
        return np.clip(out + slope * np.clip(p, 0.0, 1.0), 0.0, 1.0) if slope else out
    if method == "platt":
        return 1 / (1 + np.exp(-(cal["a"] * _logit(np.asarray(p, dtype=float)) + cal["b"])))
    raise RebuyError(f"calibrator with unknown method {method!r}; retrain the model")
