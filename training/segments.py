"""The seeds' customer segments from churn risk and expected value — a pure function serving calls."""

from __future__ import annotations

import numpy as np

from rebuy.config import SegmentsConfig

SEGMENTS = ("high_value", "potential", "dormant")


def value_cut(predicted_values: np.ndarray, cfg: SegmentsConfig) -> float:
    """The expected-spend threshold for "high value": a quantile of the value model's predictions.

    Computed once at training time (stored in the value model's metadata) so one customer scored alone
    gets the same segment as in a batch.
    """
    return float(np.quantile(np.asarray(predicted_values, dtype=float), cfg.high_value_quantile))


def segment(churn: np.ndarray, value: np.ndarray, cut: float, cfg: SegmentsConfig) -> np.ndarray:
    """dormant: churn ≥ dormant_churn; high_value: value ≥ cut and churn < potential_churn; else potential."""
    churn = np.asarray(churn, dtype=float)
    value = np.asarray(value, dtype=float)
    out = np.full(churn.shape, "potential", dtype=object)
    out[(value >= cut) & (churn < cfg.potential_churn)] = "high_value"
    out[churn >= cfg.dormant_churn] = "dormant"
    return out


def value_cut_from_meta(meta: dict, cfg: SegmentsConfig) -> float:
    """The high-value cut from a value model's stored test-prediction quantiles (0, 0.05, …, 1).

    Serving calls this once at model load with `bundle.meta`, then `segment` per request.
    """
    qs = np.asarray(meta["prediction_quantiles"], dtype=float)
    return float(np.interp(cfg.high_value_quantile, np.linspace(0, 1, len(qs)), qs))
