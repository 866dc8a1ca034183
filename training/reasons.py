"""Per-prediction reasons: the features that moved this customer's score most (LightGBM pred_contrib)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from training.registry import ModelBundle


def top_reasons(
    bundle: ModelBundle, X: np.ndarray, k: int = 3, direction: Literal["abs", "up"] = "abs"
) -> tuple[np.ndarray, np.ndarray]:
    """Names (n, k) and raw-score contributions (n, k) of each row's top-k features.

    "abs" ranks by |contribution| (what mattered), "up" by contribution (what pushed the score up,
    e.g. why churn risk is high). Contributions are on the booster's raw (log-odds) scale, before
    calibration, which is monotone and so does not change the ranking.
    """
    contrib = bundle.contributions(X)[:, :-1]
    k = min(k, contrib.shape[1])
    key = np.abs(contrib) if direction == "abs" else contrib
    idx = np.argsort(-key, axis=1, kind="stable")[:, :k]
    names = np.asarray(bundle.feature_names, dtype=object)[idx]
    return names, np.take_along_axis(contrib, idx, axis=1)
