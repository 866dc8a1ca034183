"""Champion models from the MLflow registry, as fast numpy predictors for serving.

A version's model directory holds `model.lgb` (LightGBM native text), `extra_files/calibrator.json` and
`extra_files/meta.json`; nothing is unpickled. Bundles are cached on disk per version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from rebuy.config import Config
from rebuy.errors import NoChampionError, RebuyError
from training.calibration import apply_calibrator

CHAMPION = "champion"
CHALLENGER = "challenger"


def registered_name(name: str) -> str:
    """Accept the spec name ("churn", "days_to_next") or the registered name ("rebuy-churn")."""
    return name if name.startswith("rebuy-") else "rebuy-" + name.replace("_", "-")


def client(cfg: Config) -> Any:
    from mlflow import MlflowClient

    if cfg.mlflow_uri.startswith("sqlite:"):
        cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=cfg.mlflow_uri, registry_uri=cfg.mlflow_registry_uri)


def experiment_id(cfg: Config, name: str) -> str:
    """The experiment `name` in the configured store, created with its artifacts at `stores.mlflow_artifact_root`
    (default: under the data directory).

    MLflow would otherwise put a new experiment's artifacts in ./mlruns of whatever directory the
    process happens to run in. Remote roots (s3://, ...) are passed to MLflow as they are.
    """
    c = client(cfg)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    root = cfg.mlflow_artifact_root
    if root.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        Path(unquote(urlsplit(root).path)).mkdir(parents=True, exist_ok=True)
    return str(c.create_experiment(name, artifact_location=root))


@dataclass
class ModelBundle:
    """What serving needs to score one model: booster, calibrator and the feature order it expects."""

    name: str
    version: str
    booster: lgb.Booster
    calibrator: dict[str, Any]
    feature_names: list[str]
    feature_service: str
    objective: str
    meta: dict[str, Any]

    @property
    def is_binary(self) -> bool:
        return self.objective == "binary"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Rows in `feature_names` order (NaN for missing) → calibrated probability or regression value."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != len(self.feature_names):
            raise RebuyError(
                f"{self.name} v{self.version} expects {len(self.feature_names)} features "
                f"({self.feature_service}), got {X.shape[1]}"
            )
        raw = np.asarray(self.booster.predict(X, num_threads=1))
        return apply_calibrator(self.calibrator, raw) if self.is_binary else raw

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw score (last column = expected value), via pred_contrib."""
        return np.asarray(
            self.booster.predict(
                np.asarray(X, dtype=np.float64).reshape(-1, len(self.feature_names)),
                pred_contrib=True,
                num_threads=1,
            )
        )


def read_bundle_dir(path: Path, name: str, version: str) -> ModelBundle:
    meta = json.loads((path / "extra_files" / "meta.json").read_text(encoding="utf-8"))
    cal = json.loads((path / "extra_files" / "calibrator.json").read_text(encoding="utf-8"))
    booster = lgb.Booster(model_file=str(path / "model.lgb"))  # threads are set per predict call
    return ModelBundle(
        name=name,
        version=str(version),
        booster=booster,
        calibrator=cal,
        feature_names=list(meta["feature_names"]),
        feature_service=meta["feature_service"],
        objective=meta["objective"],
        meta=meta,
    )


def download_version(cfg: Config, registered: str, version: str, marker: str) -> Path:
    """A registered version's files in <mlflow_dir>/bundles/<name>/<version>, downloaded once.

    `marker` is the file every rebuy bundle of that model has; a download without it was not logged by
    rebuy and is refused.
    """
    import mlflow.artifacts

    dest = cfg.paths.mlflow_dir / "bundles" / registered / str(version)
    if not (dest / marker).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        c = client(cfg)
        source = c.get_model_version(registered, str(version)).source
        if source.startswith("models:/m-"):
            # resolve the logged model through *this* store: a bare models:/ URI would be looked up in
            # MLflow's global default store (./mlflow.db of whatever directory the process runs in)
            source = c.get_logged_model(source.removeprefix("models:/")).artifact_location
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dest), tracking_uri=cfg.mlflow_uri
        )
        found = list(dest.rglob(marker))
        if not found:
            raise RebuyError(f"{registered} v{version} has no {marker}; it was not logged by rebuy")
        if found[0].parent != dest:
            for p in found[0].parent.iterdir():
                p.rename(dest / p.name)
    return dest


def load_version(cfg: Config, name: str, version: str) -> ModelBundle:
    """One registered version as a bundle (downloaded once into <mlflow_dir>/bundles/<name>/<version>)."""
    reg = registered_name(name)
    return read_bundle_dir(download_version(cfg, reg, str(version), "model.lgb"), reg, str(version))


def alias_version(cfg: Config, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client(cfg).get_model_version_by_alias(registered_name(name), alias).version)
    except MlflowException:
        return None


def load_champion(cfg: Config, name: str) -> ModelBundle:
    """The @champion of a model ("churn", "repurchase", "days_to_next", "value" or "rebuy-…")."""
    version = alias_version(cfg, name, CHAMPION)
    if version is None:
        raise NoChampionError(
            f"no @champion for {registered_name(name)} in {cfg.mlflow_uri}; "
            f"run `rebuy train {name}` (or `rebuy models promote`) first"
        )
    return load_version(cfg, name, version)


def record_alias_move(cfg: Config, name: str, version: str, *, reason: str, actor: str) -> str | None:
    """Point @champion at `version`, remembering the previous champion and why (for rollback and audit)."""
    import datetime as dt

    reg = registered_name(name)
    c = client(cfg)
    previous = alias_version(cfg, reg, CHAMPION)
    c.get_model_version(reg, str(version))  # raises a clear MLflow error for an unknown version
    c.set_registered_model_alias(reg, CHAMPION, str(version))
    if previous is not None and previous != str(version):
        c.set_model_version_tag(reg, str(version), "previous_champion", previous)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    c.set_model_version_tag(reg, str(version), "champion_reason", f"{when} {actor}: {reason}")
    rm = c.get_registered_model(reg)
    history = json.loads(rm.tags.get("champion_history", "[]"))
    history.append({"at": when, "version": str(version), "previous": previous, "by": actor, "reason": reason})
    c.set_registered_model_tag(reg, "champion_history", json.dumps(history[-50:]))
    return previous


def promote(cfg: Config, name: str, version: str, reason: str) -> str | None:
    """Make `version` the champion by hand; the reason is recorded on the version and the model."""
    if not reason.strip():
        raise RebuyError("a manual promotion needs a reason (--reason)")
    return record_alias_move(cfg, name, str(version), reason=reason, actor="manual promote")


def rollback(cfg: Config, name: str, reason: str, to_version: str | None = None) -> str:
    """Move @champion back to the version it replaced (or to `to_version`); returns the new champion."""
    reg = registered_name(name)
    current = alias_version(cfg, reg, CHAMPION)
    if current is None:
        raise RebuyError(f"{reg} has no @champion to roll back")
    target = to_version
    if target is None:
        target = client(cfg).get_model_version(reg, current).tags.get("previous_champion")
        if target is None:
            raise RebuyError(f"{reg} v{current} replaced no earlier champion; pass --to VERSION")
    record_alias_move(cfg, reg, str(target), reason=f"rollback from v{current}: {reason}", actor="rollback")
    return str(target)


def list_models(cfg: Config) -> list[dict[str, Any]]:
    """Every rebuy model version with its aliases and gate notes, newest first per model."""
    c = client(cfg)
    rows = []
    for rm in c.search_registered_models():
        if not rm.name.startswith("rebuy-"):
            continue
        by_version: dict[str, list[str]] = {}
        for alias, v in (c.get_registered_model(rm.name).aliases or {}).items():
            by_version.setdefault(str(v), []).append(alias)
        for mv in c.search_model_versions(f"name='{rm.name}'"):
            aliases = ",".join(sorted(by_version.get(str(mv.version), [])))
            rows.append(
                {
                    "model": rm.name,
                    "version": int(mv.version),
                    "aliases": aliases,
                    "test_metric": mv.tags.get("test_metric", ""),
                    "run_id": mv.run_id,
                    "note": mv.tags.get("champion_reason", mv.tags.get("gate_reason", "")),
                }
            )
    return sorted(rows, key=lambda r: (r["model"], -r["version"]))
