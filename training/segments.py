"""The seeds' customer segments from churn risk and expected value — a pure function serving calls."""

from __future__ import annotations

import numpy as np

from rebuy.config import SegmentsConfig
from rebuy.errors import RebuyError

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
    """The high-value cut a value model carries: `value_cut` written at training time (training.tracking),
    or, for a model logged without it, interpolated from its test-prediction quantiles (0, 0.05, …, 1).

    The stored cut wins even when the configured quantile changed since: a segment must not move because
    a config was edited after the model was trained (retrain to apply a new quantile).
    Serving calls this once at model load with `bundle.meta`, then `segment` per request.
    """
    if meta.get("value_cut") is not None:
        return float(meta["value_cut"])
    if "prediction_quantiles" not in meta:
        raise RebuyError(
            "the value model's metadata has neither value_cut nor prediction_quantiles; "
            "retrain it with `rebuy train value`"
        )
    qs = np.asarray(meta["prediction_quantiles"], dtype=float)
    return float(np.interp(cfg.high_value_quantile, np.linspace(0, 1, len(qs)), qs))
