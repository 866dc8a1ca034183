"""The one training pipeline: spec + point-in-time training set in, tuned/calibrated model + evaluation out.

Pure with respect to MLflow: `train` touches only the Optuna study file (its persistence is the point);
tracking and registration happen in `training.tracking`, so tests can inspect a result without a registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rebuy.config import Config
from rebuy.errors import DataError
from training import metrics as M
from training.baselines import RFM_COLUMNS, bgnbd_baseline, recency_baseline
from training.calibration import apply_calibrator, select_calibrator
from training.specs import ModelSpec
from training.split import time_split
from training.tuning import LGB_METRIC, base_params, fit_booster, study_storage, tune

KEYS = ("customer_id", "cutoff")
# columns that are never features even when no feature list is given (labels of features.labels, keys)
LABEL_COLUMNS = frozenset({"churn", "repurchase", "days_to_next_order", "next_order_observed", "spend_next"})
NON_FEATURE_PREFIXES = ("label_", "rfm_", "event_timestamp", "oracle")
SHAP_ROWS = 1000


@dataclass
class TrainResult:
    """Everything a run produced; `training.tracking.log_run` turns it into an MLflow run + version."""

    spec: ModelSpec
    booster: lgb.Booster
    calibrator: dict[str, Any]
    feature_names: list[str]
    params: dict[str, Any]
    metrics: dict[str, float]
    quality: dict[str, dict[str, float]]  # model / recency / bgnbd / oracle -> metrics on the test rows
    tuning: dict[str, Any]
    data_digest: str
    test_keys: pd.DataFrame  # customer_id, cutoff of the test rows (the gate rescores the champion on them)
    test_X: np.ndarray
    test_y: np.ndarray
    test_pred: np.ndarray
    reference: pd.DataFrame  # sample of training features (drift reference)
    importance: dict[str, float]
    shap_mean_abs: dict[str, float]
    split_info: dict[str, Any] = field(default_factory=dict)
    test_shap: np.ndarray | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.booster.predict(X, num_threads=1))
        return apply_calibrator(self.calibrator, raw) if self.spec.is_binary else raw


def data_digest(df: pd.DataFrame, columns: list[str]) -> str:
    """sha256 over the rows and columns the model saw, logged as data lineage and keying the Optuna study."""
    cols = sorted(c for c in columns if c in df.columns)
    h = hashlib.sha256(",".join(cols).encode())
    h.update(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()


def infer_features(df: pd.DataFrame) -> list[str]:
    return [
        c
        for c in df.columns
        if c not in KEYS and c not in LABEL_COLUMNS and not c.startswith(NON_FEATURE_PREFIXES)
    ]


def prepare(spec: ModelSpec, training_set: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """Check the frame, keep the spec's population, and shape the label (cap/censor) — or say what is wrong."""
    missing = [c for c in (*KEYS, spec.label) if c not in training_set.columns]
    if missing:
        raise DataError(
            f"training set for {spec.name!r} lacks required columns {missing}",
            column=missing[0],
            hint="rebuild it with features.training_set.build_training_set for this spec's service",
        )
    absent = [c for c in feature_names if c not in training_set.columns]
    if absent:
        raise DataError(
            f"training set lacks features of FeatureService {spec.feature_service!r}: {absent[:10]}",
            column=absent[0],
            hint="rebuild the training set with the same FeatureService",
        )
    bad = [
        c for c in feature_names if not (is_numeric_dtype(training_set[c]) or is_bool_dtype(training_set[c]))
    ]
    if bad:
        raise DataError(
            f"features must be numeric; non-numeric: {bad}",
            column=bad[0],
            rows=training_set[[*KEYS, bad[0]]].head(5),
            hint="encode the feature numerically in its feature view",
        )
    df = training_set
    if spec.population:
        try:
            df = df.query(spec.population)
        except Exception as exc:  # pandas raises several types for a bad expression
            raise DataError(
                f"population filter {spec.population!r} of spec {spec.name!r} failed: {exc}",
                hint="the filter refers to training-set columns (rfm_* come from the orders)",
            ) from exc
    df = df[df[spec.label].notna()]
    if spec.observed_column and spec.cap_days is not None:
        if spec.observed_column not in df.columns:
            raise DataError(
                f"training set lacks {spec.observed_column!r}, needed for the censored label {spec.label!r}",
                column=spec.observed_column,
            )
        # A cutoff whose censored rows were followed for less than the cap is immature: keeping only its
        # observed rows would bias durations short, so the whole cutoff goes.
        y = df[spec.label].astype(float)
        short = (df[spec.observed_column].astype(float) != 1) & (y < spec.cap_days)
        immature = set(df.loc[short, "cutoff"])
        df = df[~df["cutoff"].isin(immature)].copy()
        df[spec.label] = np.minimum(df[spec.label].astype(float), spec.cap_days)
    if df.empty:
        raise DataError(f"no rows left for {spec.name!r} after the population filter {spec.population!r}")
    if spec.is_binary:
        vals = set(pd.unique(df[spec.label].astype(float)))
        if not vals <= {0.0, 1.0}:
            raise DataError(
                f"binary label {spec.label!r} has values other than 0/1: {sorted(vals)[:5]}",
                column=spec.label,
            )
    return df


def _matrix(df: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    return df[feature_names].to_numpy(dtype=np.float64, na_value=np.nan)


# the truth for test rows: a frame (customer_id, cutoff, oracle) or a function of the test keys returning one
Oracle = pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame | None]


def train(
    cfg: Config,
    spec: ModelSpec,
    training_set: pd.DataFrame,
    oracle: Oracle | None = None,
    *,
    feature_names: list[str] | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Tune, fit, calibrate and evaluate one model described by `spec`.

    `oracle` (simulated data only) has customer_id, cutoff and `oracle`: the true probability of this
    spec's label (or the expected value for regressions) at that cutoff; a callable is asked for the
    test rows only (the simulator's truth replay is expensive). `rfm_*` columns (from
    `training.baselines.rfm_at`) enable the recency and BG/NBD baselines.
    """
    feats = list(feature_names) if feature_names is not None else infer_features(training_set)
    df = prepare(spec, training_set, feats)
    tcfg = cfg.training
    sp = time_split(df, spec.horizon_days, tcfg.test_cutoffs, tcfg.valid_cutoffs)
    calib_rows = sp.calib if spec.calibrate else sp.calib.iloc[:0]
    valid = sp.valid if spec.calibrate else pd.concat([sp.valid, sp.calib])
    for part, name in ((sp.train, "training"), (valid, "validation"), (sp.test, "test")):
        if spec.is_binary and part[spec.label].nunique() < 2:
            raise DataError(
                f"{name} rows of {spec.name!r} have a single label value; cannot train or evaluate",
                hint="use more customers or more cutoffs",
            )
    digest = data_digest(df, [*KEYS, *feats, spec.label])
    o = tcfg.optuna
    Xtr, ytr = _matrix(sp.train, feats), sp.train[spec.label].to_numpy(dtype=float)
    Xva, yva = _matrix(valid, feats), valid[spec.label].to_numpy(dtype=float)
    tuned = tune(
        spec,
        Xtr,
        ytr,
        Xva,
        yva,
        feats,
        storage=study_storage(cfg),
        # the metric is part of the name: a study must never mix trials scored by different metrics
        study_name=f"{spec.name}-{LGB_METRIC[spec.objective]}-{digest[:16]}",
        trials=o.trials,
        early_stopping=o.early_stopping_rounds,
        seed=o.seed,
        show_progress=show_progress,
    )
    params = {**base_params(spec, o.seed), **tuned.best_params}
    dtrain = lgb.Dataset(
        Xtr, ytr, feature_name=feats, free_raw_data=False, params={"feature_pre_filter": False}
    )
    dvalid = lgb.Dataset(Xva, yva, reference=dtrain, params={"feature_pre_filter": False})
    booster = fit_booster(params, dtrain, dvalid, o.early_stopping_rounds)
    booster = _truncate(booster)

    if spec.is_binary and spec.calibrate:
        # both halves of the validation customers: the early-stopping half only chose the number of trees
        # (no tree was fitted on it), and twice the rows steady the calibrator; the method is chosen
        # across the two halves (training.calibration.select_calibrator)
        calibrator = select_calibrator(
            [
                (
                    np.asarray(
                        booster.predict(Xva if part is valid else _matrix(part, feats), num_threads=1)
                    ),
                    part[spec.label].to_numpy(dtype=float),
                )
                for part in (valid, calib_rows)
            ]
        )
    else:
        calibrator = {"method": "identity"}
    Xte, yte = _matrix(sp.test, feats), sp.test[spec.label].to_numpy(dtype=float)
    raw = np.asarray(booster.predict(Xte, num_threads=1))
    pred = apply_calibrator(calibrator, raw) if spec.is_binary else raw
    metrics = M.binary_metrics(yte, pred) if spec.is_binary else M.regression_metrics(yte, pred)
    quality = {"model": dict(metrics)}
    quality.update(_baselines(spec, sp.train, sp.test, yte, pred, metrics, cfg.training.optuna.seed))
    truth = _oracle_quality(spec, sp.test, yte, oracle) if oracle is not None else None
    if truth is not None:
        quality["oracle"] = truth
    flat = dict(metrics)
    for who, m in quality.items():
        if who != "model":
            flat.update({f"{who}_{k}": v for k, v in m.items()})
    if "oracle" in quality and spec.is_binary and quality["oracle"].get("roc_auc"):
        flat["auc_ratio_to_oracle"] = metrics["roc_auc"] / quality["oracle"]["roc_auc"]

    # TreeSHAP costs rows x trees x leaves x depth²: a mean |contribution| over 1,000 rows is within a few
    # percent of the full-test value and the summary plot looks the same, at a fraction of the time
    contrib_rows = Xte[: min(len(Xte), SHAP_ROWS)]
    contrib = np.asarray(booster.predict(contrib_rows, pred_contrib=True, num_threads=1))[:, :-1]
    shap_mean = dict(zip(feats, np.abs(contrib).mean(axis=0).round(6).tolist(), strict=True))
    importance = dict(zip(feats, booster.feature_importance("gain").round(4).tolist(), strict=True))
    ref = sp.train.sample(min(len(sp.train), cfg.drift.reference_sample), random_state=o.seed)
    return TrainResult(
        spec=spec,
        booster=booster,
        calibrator=calibrator,
        feature_names=feats,
        params=params,
        metrics=flat,
        quality=quality,
        tuning=tuned.summary,
        data_digest=digest,
        test_keys=sp.test[list(KEYS)].reset_index(drop=True),
        test_X=Xte,
        test_y=yte,
        test_pred=pred,
        reference=ref[[*KEYS, *feats]].reset_index(drop=True),
        importance=importance,
        shap_mean_abs=shap_mean,
        split_info={
            "train_rows": len(sp.train),
            "valid_rows": len(valid),
            # rows the calibrator was fitted on (both validation halves; 0 without calibration)
            "calib_rows": len(valid) + len(calib_rows) if spec.is_binary and spec.calibrate else 0,
            "test_rows": len(sp.test),
            "purged_rows": sp.purged_rows,
            "valid_start": str(sp.valid_start),
            "test_start": str(sp.test_start),
            "best_iteration": booster.current_iteration(),
        },
        test_shap=contrib,
    )


def _truncate(booster: lgb.Booster) -> lgb.Booster:
    """Keep only the early-stopped trees, so the text model predicts exactly what was evaluated."""
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _baselines(
    spec: ModelSpec,
    train: pd.DataFrame,
    test: pd.DataFrame,
    yte: np.ndarray,
    pred: np.ndarray,
    metrics: dict[str, float],
    seed: int,
) -> dict[str, dict[str, float]]:
    if not spec.is_binary or not set(RFM_COLUMNS) <= set(train.columns):
        return {}
    out: dict[str, dict[str, float]] = {}
    rec = recency_baseline(train, spec.label, test)
    out["recency"] = M.binary_metrics(yte, rec)
    ci = M.bootstrap_auc_diff(yte, pred, rec, seed=seed)
    out["recency"].update(
        {"auc_gain": ci["diff"], "auc_gain_ci_low": ci["ci_low"], "auc_gain_ci_high": ci["ci_high"]}
    )
    if spec.baseline is not None:
        try:
            bg, model = bgnbd_baseline(train, test, spec.baseline, spec.horizon_days, seed=seed)
        except DataError:
            return out
        out["bgnbd"] = M.binary_metrics(yte, bg)
        out["bgnbd"].update({"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b})
    return out


def _oracle_quality(
    spec: ModelSpec, test: pd.DataFrame, yte: np.ndarray, oracle: Oracle
) -> dict[str, float] | None:
    frame = oracle(test[list(KEYS)].reset_index(drop=True)) if callable(oracle) else oracle
    if frame is None:
        return None
    need = {"customer_id", "cutoff", "oracle"}
    if not need <= set(frame.columns):
        raise DataError(f"oracle frame lacks columns {sorted(need - set(frame.columns))}")
    o = test[list(KEYS)].merge(frame[["customer_id", "cutoff", "oracle"]], on=list(KEYS), how="left")
    if o["oracle"].isna().any():
        raise DataError(
            f"oracle has no value for {int(o['oracle'].isna().sum())} test rows",
            rows=o[o["oracle"].isna()].head(5),
            hint="ask the truth API for every test (customer, cutoff)",
        )
    truth = o["oracle"].to_numpy(dtype=float)
    return M.binary_metrics(yte, truth) if spec.is_binary else M.regression_metrics(yte, truth)
