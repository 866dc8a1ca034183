"""Model specs: everything that differs between churn, repurchase, days-to-next and value is data here.

The pipeline (`training.pipeline.train`) reads a spec and never branches on the model's name, so a new
model is a new spec, not a copy of the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rebuy.config import Config
from rebuy.errors import RebuyError


@dataclass(frozen=True)
class ParamRange:
    """One dimension of the Optuna search space (kept as data so it can be logged and compared)."""

    kind: Literal["int", "float"]
    low: float
    high: float
    log: bool = False


DEFAULT_SPACE: Mapping[str, ParamRange] = {
    "learning_rate": ParamRange("float", 0.02, 0.2, log=True),
    "num_leaves": ParamRange("int", 7, 63, log=True),
    "min_data_in_leaf": ParamRange("int", 20, 400, log=True),
    "feature_fraction": ParamRange("float", 0.5, 1.0),
    "bagging_fraction": ParamRange("float", 0.6, 1.0),
    "lambda_l2": ParamRange("float", 1e-3, 10.0, log=True),
}

# metric name -> True when larger is better (the gate and Optuna need the direction)
METRIC_DIRECTION: Mapping[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "mae": False,
    "rmse": False,
    "log_loss": False,
}


@dataclass(frozen=True)
class ModelSpec:
    """What one model predicts, from which features, tuned how.

    `population` is a pandas query over the training set (which rows are in scope, e.g. customers with at
    least one order); `baseline` says how the BG/NBD and recency baselines map onto this label
    ("churn" = P(no order in h), "repurchase" = P(order in h), "spend" / None = no probability baseline).
    """

    name: str
    registered_name: str
    label: str
    horizon_days: int
    feature_service: str
    objective: Literal["binary", "regression", "regression_l1", "tweedie"]
    metric: str
    search_space: Mapping[str, ParamRange] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    population: str | None = "rfm_orders >= 1"
    calibrate: bool = True
    baseline: Literal["churn", "repurchase"] | None = None
    # regression on a right-censored duration: `observed_column` is 1 when the event was seen; rows
    # censored before `cap_days` are dropped (their duration is unknown), every duration is capped
    observed_column: str | None = None
    cap_days: float | None = None
    # its predictions set the segments' high-value cut (training.segments), stored with the model as data
    sets_value_cut: bool = False

    @property
    def maturity_days(self) -> int:
        """Days after a cutoff until its label is known: the horizon, or the cap of a censored duration.

        The cutoff grid of the spec ends this many days before as-of (features.training_set.cutoff_grid).
        """
        if self.observed_column is not None and self.cap_days is not None:
            return max(self.horizon_days, int(np.ceil(self.cap_days)))
        return self.horizon_days

    @property
    def is_binary(self) -> bool:
        return self.objective == "binary"

    @property
    def higher_is_better(self) -> bool:
        if self.metric not in METRIC_DIRECTION:
            raise RebuyError(
                f"spec {self.name!r}: unknown metric {self.metric!r}; known: {sorted(METRIC_DIRECTION)}"
            )
        return METRIC_DIRECTION[self.metric]


def default_specs(cfg: Config) -> dict[str, ModelSpec]:
    """The four shipped models; horizons come from the config so a shop can change them in rebuy.toml."""
    h = cfg.horizons
    return {
        "churn": ModelSpec(
            name="churn",
            registered_name="rebuy-churn",
            label="churn",
            horizon_days=h.churn_days,
            feature_service="churn_v2",
            objective="binary",
            metric="roc_auc",
            baseline="churn",
        ),
        "repurchase": ModelSpec(
            name="repurchase",
            registered_name="rebuy-repurchase",
            label="repurchase",
            horizon_days=h.repurchase_days,
            feature_service="repurchase_v2",
            objective="binary",
            metric="roc_auc",
            baseline="repurchase",
        ),
        "days_to_next": ModelSpec(
            name="days_to_next",
            registered_name="rebuy-days-to-next",
            label="days_to_next_order",
            horizon_days=h.repurchase_days,
            feature_service="repurchase_v2",
            objective="regression_l1",
            metric="mae",
            calibrate=False,
            observed_column="next_order_observed",
            cap_days=float(h.value_days),
        ),
        "value": ModelSpec(
            name="value",
            registered_name="rebuy-value",
            label="spend_next",
            horizon_days=h.value_days,
            feature_service="value_v2",
            # an expectation, judged by a mean-based metric: MAE would reward predicting the median (0 for
            # most customers) and so prefer models that rank worse (measured: Spearman 0.28 vs 0.30)
            objective="tweedie",
            metric="rmse",
            calibrate=False,
            sets_value_cut=True,
        ),
    }


# `rebuy train NAME` -> the specs it trains (repurchase brings its timing companion)
TRAIN_GROUPS: Mapping[str, Sequence[str]] = {
    "churn": ("churn",),
    "repurchase": ("repurchase", "days_to_next"),
    "value": ("value",),
    "all": ("churn", "repurchase", "days_to_next", "value"),
}


def get_spec(cfg: Config, name: str) -> ModelSpec:
    specs = default_specs(cfg)
    if name not in specs:
        raise RebuyError(f"unknown model {name!r}; known: {sorted(specs)}")
    return specs[name]


def resolve_features(spec: ModelSpec, services: Mapping[str, Sequence[str]]) -> list[str]:
    """The spec's feature list from the known FeatureServices, or an error that says what exists."""
    if spec.feature_service not in services:
        raise RebuyError(
            f"model spec {spec.name!r} names FeatureService {spec.feature_service!r}, which does not exist; "
            f"known services: {sorted(services) or 'none'}. "
            "what to do: fix the spec's feature_service or define the service in features/ and run "
            "`rebuy features apply`."
        )
    feats = list(services[spec.feature_service])
    if not feats:
        raise RebuyError(f"FeatureService {spec.feature_service!r} has no features; nothing to train on")
    return feats
