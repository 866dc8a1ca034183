"""Evaluation plots as PNG files (matplotlib, Agg backend chosen per figure — no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def calibration_curve(y: np.ndarray, p: np.ndarray, path: Path, bins: int = 10) -> Path:
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.plot([p[g].mean() for g in groups], [y[g].mean() for g in groups], marker="o")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="calibration (test)")
    return _save(fig, path)


# a curve drawn through more points than a 90-dpi figure has pixels only costs time on large shops
CURVE_POINTS = 1000
SCATTER_POINTS = 20_000


def gain_lift(y: np.ndarray, score: np.ndarray, path: Path) -> Path:
    order = np.argsort(-score, kind="stable")
    share = np.arange(1, len(y) + 1) / len(y)
    gain = np.cumsum(y[order]) / max(y.sum(), 1)
    keep = np.unique(np.linspace(0, len(y) - 1, min(len(y), CURVE_POINTS)).round().astype(int))
    share, gain = share[keep], gain[keep]
    fig = Figure(figsize=(9, 4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.plot(share, gain)
    ax1.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax1.set(xlabel="share of customers (by score)", ylabel="share of positives", title="cumulative gain")
    ax2.plot(share, gain / share)
    ax2.axhline(1, ls="--", c="grey", lw=1)
    ax2.set(xlabel="share of customers (by score)", ylabel="lift", title="lift", ylim=(0, None))
    return _save(fig, path)


def predicted_vs_actual(y: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    hi = float(max(np.max(pred), np.max(y)))
    if len(y) > SCATTER_POINTS:  # a random sample looks the same and draws in constant time
        pick = np.random.default_rng(0).choice(len(y), SCATTER_POINTS, replace=False)
        pred, y = pred[pick], y[pick]
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.scatter(pred, y, s=3, alpha=0.3)
    ax.plot([0, hi], [0, hi], ls="--", c="grey", lw=1)
    ax.set(xlabel="prediction", ylabel="actual", title="prediction vs actual (test)")
    return _save(fig, path)


def feature_importance(importance: dict[str, float], path: Path, top: int = 20) -> Path:
    items = sorted(importance.items(), key=lambda kv: kv[1])[-top:]
    fig = Figure(figsize=(6, 0.3 * len(items) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="total gain", title="feature importance")
    return _save(fig, path)


def shap_summary(contrib: np.ndarray, X: np.ndarray, names: list[str], path: Path, top: int = 15) -> Path:
    """Beeswarm-style summary from LightGBM's pred_contrib: one row per feature, colour = feature value rank."""
    mean_abs = np.abs(contrib).mean(axis=0)
    idx = np.argsort(mean_abs)[-top:]
    fig = Figure(figsize=(7, 0.35 * len(idx) + 1.5))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for row, j in enumerate(idx):
        v = X[:, j]
        rank = np.full(len(v), 0.5)
        ok = ~np.isnan(v)
        if ok.sum() > 1:
            rank[ok] = np.argsort(np.argsort(v[ok])) / (ok.sum() - 1)
        ax.scatter(
            contrib[:, j], row + rng.uniform(-0.25, 0.25, len(v)), c=rank, cmap="coolwarm", s=3, alpha=0.5
        )
    ax.set_yticks(range(len(idx)), [names[j] for j in idx])
    ax.axvline(0, c="grey", lw=1)
    ax.set(xlabel="contribution to raw score (pred_contrib)", title="SHAP summary (blue low, red high value)")
    return _save(fig, path)
