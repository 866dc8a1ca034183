"""MLflow adapter: log a `TrainResult` as a run, register it, and gate it against the champion.

The gate rescoring the champion on the challenger's own test rows is the point: metrics logged by two
different runs were measured on different data and cannot decide a promotion.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import Config
from training import metrics as M
from training import plots
from training.pipeline import TrainResult
from training.registry import (
    CHALLENGER,
    CHAMPION,
    ModelBundle,
    alias_version,
    client,
    load_version,
    record_alias_move,
)
from training.segments import value_cut

EXPERIMENT = "rebuy-training"


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    registered_name: str
    version: str
    promoted: bool
    reason: str
    challenger_metric: float
    champion_metric: float | None
    champion_version: str | None


def _experiment_id(cfg: Config) -> str:
    from training.registry import experiment_id

    return experiment_id(cfg, EXPERIMENT)


def _metric(result_spec_metric: str, binary: bool, y: np.ndarray, pred: np.ndarray) -> float:
    m = M.binary_metrics(y, pred) if binary else M.regression_metrics(y, pred)
    return float(m[result_spec_metric])


def gate(
    result: TrainResult, champion: ModelBundle | None, margin: float
) -> tuple[bool, str, float, float | None]:
    """Promote when there is no champion, or the challenger beats it on the same test rows by `margin`."""
    spec = result.spec
    challenger = _metric(spec.metric, spec.is_binary, result.test_y, result.test_pred)
    if champion is None:
        return True, "no champion yet", challenger, None
    missing = [f for f in champion.feature_names if f not in result.feature_names]
    if missing:
        return (
            False,
            (
                f"champion v{champion.version} uses features absent from this run ({missing[:5]}); "
                "not comparable on the same rows — promote by hand if intended"
            ),
            challenger,
            None,
        )
    cols = [result.feature_names.index(f) for f in champion.feature_names]
    champ = _metric(spec.metric, spec.is_binary, result.test_y, champion.predict(result.test_X[:, cols]))
    better = challenger >= champ + margin if spec.higher_is_better else challenger <= champ - margin
    word = "beats" if better else "does not beat"
    reason = (
        f"challenger {spec.metric}={challenger:.4f} {word} champion v{champion.version} "
        f"{spec.metric}={champ:.4f} by the margin {margin} on the same {len(result.test_y)} test rows"
    )
    return better, reason, challenger, champ


def log_run(cfg: Config, result: TrainResult) -> RunOutcome:
    """One MLflow run per trained model; returns the new version and the gate's decision."""
    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    spec = result.spec
    c = client(cfg)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_registry_uri(cfg.mlflow_registry_uri)
    exp_id = _experiment_id(cfg)
    champ_version = alias_version(cfg, spec.registered_name, CHAMPION)
    champion = load_version(cfg, spec.registered_name, champ_version) if champ_version else None
    with (
        tempfile.TemporaryDirectory() as tmp_s,
        mlflow.start_run(experiment_id=exp_id, run_name=spec.name) as run,
    ):
        tmp = Path(tmp_s)
        mlflow.log_params({k: v for k, v in result.params.items()})
        mlflow.log_params({"spec_" + k: v for k, v in _spec_params(result).items()})
        mlflow.log_metrics(
            {k: float(v) for k, v in result.metrics.items() if v is not None and np.isfinite(v)}
        )
        mlflow.set_tags(
            {
                "feature_service": spec.feature_service,
                "model": spec.name,
                "data_digest": result.data_digest,
                "n_features": str(len(result.feature_names)),
            }
        )
        _write_json(
            tmp / "features.json", {"feature_service": spec.feature_service, "features": result.feature_names}
        )
        _write_json(tmp / "optuna_study.json", result.tuning)
        _write_json(tmp / "quality.json", result.quality)
        _write_json(tmp / "split.json", result.split_info)
        _write_json(tmp / "data_digest.json", {"sha256": result.data_digest, **result.split_info})
        for f in ("features.json", "optuna_study.json", "quality.json", "split.json", "data_digest.json"):
            mlflow.log_artifact(str(tmp / f), artifact_path="info")
        ref = tmp / "reference.parquet"
        result.reference.to_parquet(ref, index=False)
        mlflow.log_artifact(str(ref), artifact_path="reference")
        for png in _plots(result, tmp):
            mlflow.log_artifact(str(png), artifact_path="plots")

        meta = {
            "name": spec.registered_name,
            "spec": spec.name,
            "objective": spec.objective,
            "feature_names": result.feature_names,
            "feature_service": spec.feature_service,
            "label": spec.label,
            "horizon_days": spec.horizon_days,
            "data_digest": result.data_digest,
            "metric": spec.metric,
            "test_metric": float(result.metrics[spec.metric]),
            # test-prediction quantiles (0, 0.05, …, 1): segments' value cut, drift of predictions
            "prediction_quantiles": np.quantile(result.test_pred, np.linspace(0, 1, 21)).tolist(),
        }
        if spec.sets_value_cut:
            # the segments' high-value threshold travels with the model, so serving labels the same
            # customers high_value as training would, one customer at a time or in a batch
            meta["value_cut"] = value_cut(result.test_pred, cfg.training.segments)
            meta["value_cut_quantile"] = cfg.training.segments.high_value_quantile
            mlflow.log_metric("value_cut", meta["value_cut"])
        _write_json(tmp / "meta.json", meta)
        _write_json(tmp / "calibrator.json", result.calibrator)
        example = pd.DataFrame(result.test_X[:5], columns=result.feature_names)
        info = mlflow.lightgbm.log_model(
            result.booster,
            name="model",
            signature=infer_signature(example, result.test_pred[:5]),
            input_example=example,
            registered_model_name=spec.registered_name,
            extra_files=[str(tmp / "meta.json"), str(tmp / "calibrator.json")],
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
        )
        version = str(info.registered_model_version)
        promoted, reason, ch_m, champ_m = gate(result, champion, cfg.training.promotion_margin)
        mlflow.set_tags({"gate_promoted": str(promoted), "gate_reason": reason})
        run_id = run.info.run_id
    name = spec.registered_name
    c.set_registered_model_alias(name, CHALLENGER, version)
    c.set_model_version_tag(name, version, "run_id", run_id)
    c.set_model_version_tag(name, version, "test_metric", f"{ch_m:.6f}")
    c.set_model_version_tag(name, version, "gate_reason", reason)
    if promoted:
        record_alias_move(cfg, name, version, reason=f"gate: {reason}", actor="training")
    return RunOutcome(
        run_id=run_id,
        registered_name=name,
        version=version,
        promoted=promoted,
        reason=reason,
        challenger_metric=ch_m,
        champion_metric=champ_m,
        champion_version=champ_version,
    )


def _spec_params(result: TrainResult) -> dict[str, Any]:
    s = result.spec
    return {
        "label": s.label,
        "horizon_days": s.horizon_days,
        "feature_service": s.feature_service,
        "objective": s.objective,
        "metric": s.metric,
        "population": s.population,
        "calibrate": s.calibrate,
        "calibrator": result.calibrator.get("method"),
        "search_space": json.dumps({k: [r.kind, r.low, r.high, r.log] for k, r in s.search_space.items()}),
    }


def _plots(result: TrainResult, tmp: Path) -> list[Path]:
    y, p = result.test_y, result.test_pred
    out = [plots.feature_importance(result.importance, tmp / "feature_importance.png")]
    if result.test_shap is not None:
        out.append(
            plots.shap_summary(
                result.test_shap,
                result.test_X[: len(result.test_shap)],
                result.feature_names,
                tmp / "shap_summary.png",
            )
        )
    if result.spec.is_binary:
        out.append(plots.calibration_curve(y, p, tmp / "calibration_curve.png"))
        out.append(plots.gain_lift(y, p, tmp / "gain_lift.png"))
    else:
        out.append(plots.predicted_vs_actual(y, p, tmp / "predicted_vs_actual.png"))
    return out


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str, allow_nan=True), encoding="utf-8")
