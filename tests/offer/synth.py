"""A tiny randomized campaign with known per-customer effects (the simulator's truth, in miniature)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def make_campaign(
    n: int, seed: int, arms: tuple[str, ...] = ("none", "A", "B"), scenario: str = "personalise"
) -> dict[str, object]:
    """Randomized campaign (arms uniform) whose truth favours one recommendation.

    personalise: A helps customers with x1 > 0.5 (+1.5 on the logit) and hurts the others (−0.5); B helps
    segment "a" only (+0.8). one_arm: A helps everyone (+0.8), B a little (+0.2). nothing: A hurts
    everyone (−0.3), B does nothing. Spend is conversion × a lognormal basket.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.random(n)
    x2 = rng.normal(size=n)
    seg = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    base = -1.0 + 0.5 * x2
    lift = {
        "personalise": {
            "none": np.zeros(n),
            "A": np.where(x1 > 0.5, 1.5, -0.5),
            "B": np.where(seg == "a", 0.8, 0.0),
        },
        "one_arm": {"none": np.zeros(n), "A": np.full(n, 0.8), "B": np.full(n, 0.2)},
        "nothing": {"none": np.zeros(n), "A": np.full(n, -0.3), "B": np.zeros(n)},
    }[scenario]
    p = {a: _sigmoid(base + lift[a]) for a in arms}
    arm = rng.choice(np.array(arms, dtype=object), n)
    idx = np.array([arms.index(a) for a in arm])
    p_row = np.column_stack([p[a] for a in arms])[np.arange(n), idx]
    conv = (rng.random(n) < p_row).astype(float)
    basket = np.exp(rng.normal(3.0, 0.5, n))
    spend = conv * basket
    X = pd.DataFrame({"x1": x1, "x2": x2, "seg": seg})
    truth = pd.DataFrame({a: p[a] - p["none"] for a in arms if a != "none"})
    return {
        "X": X,
        "arm": arm,
        "propensity": np.full(n, 1 / len(arms)),
        "outcomes": pd.DataFrame({"conversion": conv, "spend": spend}),
        "truth_conversion": truth,
        "p": p,
        "basket_mean": float(np.exp(3.0 + 0.5**2 / 2)),
    }
