"""Next-best-offer commands and persistence: `rebuy train offer`, `rebuy evaluate-policy`, the registered model.

The work is split by concern: logged rows and outcomes (`training.offer_data`), policy evaluation
(`training.offer_eval`), learning (`training.offer_learn`), the promotion gate (`training.offer_gate`); this
module reads the decision log and features, saves and loads `OfferModel`, logs to MLflow and moves aliases.
Its names are re-exported for the callers of the former single module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import Config
from rebuy.errors import RebuyError
from training.offer_data import (
    CONVERSION,
    FEATURE_SERVICE,
    KS,
    MARGIN,
    N_ORDERS,
    REGISTERED_NAME,
    REVENUE,
    LoggedSet,
    arm_costs,
    customer_time_split,
    decision_outcomes,
    hash_split,
    logged_from_decisions,
    net_of_cost,
    read_decision_log,
    realised_margin,
    split_logged,
)
from training.offer_eval import (
    Current,
    OutcomeEvaluation,
    _actions,
    _on_policy,
    _policy_rows,
    evaluate_uplift,
    learn_and_evaluate,
    one_hot,
    personalised_actions,
    recommend,
    restrict,
)
from training.offer_gate import (
    promotion_decision,
)
from training.offer_learn import (
    MARGIN_PATHS,
    MIN_BASKET_ROWS,
    PATH_RULES,
    SHRINK_GRID,
    Economics,
    MarginModel,
    OfferFit,
    OfferModel,
    _basket,
    choose_margin_path,
    choose_shrink,
    fit_margin_model,
    learn_offer_model,
    measured_effects,
    optuna_tuner,
)
from training.policy import NONE
from training.registry import experiment_id

# --- the served offer model ------------------------------------------------------------------------------


@dataclass
class OfferData:
    """The decision log turned into train / held-out logged sets (held out by customer and time)."""

    train: LoggedSet
    test: LoggedSet
    n_decisions: int


def offer_data(cfg: Config, as_of: pd.Timestamp, test_share: float = 0.3) -> OfferData:
    """Decisions whose attribution window is over by `as_of`, their outcomes, and the offer FeatureService's features."""
    from features.training_set import build_training_set, feature_names
    from rebuy.ingest import read_canonical

    tables = read_canonical(cfg.paths.data_dir)
    decisions = read_decision_log(cfg.decision_log_url)
    matured = decisions["decided_at"] + pd.Timedelta(days=cfg.offers.attribution_days) <= as_of
    rows = decision_outcomes(decisions[matured], tables["orders"], cfg.offers)
    if len(rows) < 100:
        raise RebuyError(
            f"only {len(rows)} randomized decisions with a finished {cfg.offers.attribution_days}-day "
            f"attribution window by {as_of}; the offer model needs logged exploration to learn from"
        )
    names = feature_names(cfg, FEATURE_SERVICE)
    cutoffs = sorted(rows["cutoff"].unique())
    feats = build_training_set(cfg, FEATURE_SERVICE, [pd.Timestamp(c) for c in cutoffs], tables, as_of=as_of)
    arms = [o for o in cfg.offers.catalogue if o != NONE]
    logged = logged_from_decisions(rows, feats, names, arms)
    train, test = customer_time_split(rows, test_share, cfg.offers.attribution_days)
    return OfferData(logged.take(np.flatnonzero(train)), logged.take(np.flatnonzero(test)), len(rows))


def load_offer_version(cfg: Config, version: str) -> OfferModel:
    """One registered offer model version, downloaded once into <mlflow_dir>/bundles/rebuy-offer/<version>."""
    from training.registry import download_version

    return OfferModel.load(download_version(cfg, REGISTERED_NAME, str(version), "offer.json"), str(version))


def load_offer_champion(cfg: Config) -> OfferModel | None:
    """Serving's hook: the @champion offer model, or None when none has been promoted yet."""
    from training.registry import CHAMPION, alias_version

    version = alias_version(cfg, REGISTERED_NAME, CHAMPION)
    return load_offer_version(cfg, version) if version is not None else None


def _current_policy(cfg: Config, exclude_version: str | None = None) -> tuple[Current, str | None]:
    """The champion's greedy policy, or the logging policy when there is no champion."""
    from training.registry import CHAMPION, alias_version

    version = alias_version(cfg, REGISTERED_NAME, CHAMPION)
    if version is None or version == exclude_version:
        return "logged", version
    champ = load_offer_version(cfg, version)

    def act(ds: LoggedSet) -> np.ndarray:
        return personalised_actions(champ.margin, champ.margin.encoder.transform(ds.X), MARGIN, ds.allowed)

    return act, version


def _log_evaluation(evs: Mapping[str, OutcomeEvaluation], tmp: Path) -> None:
    """Qini / uplift curves (PNG + CSV) and the evaluation JSON as artifacts of the active MLflow run."""
    import mlflow

    from training.offer_plots import plot_outcome

    for name, ev in evs.items():
        (tmp / f"evaluation_{name}.json").write_text(
            json.dumps(ev.to_json(), indent=2, default=float), "utf-8"
        )
        mlflow.log_artifact(str(tmp / f"evaluation_{name}.json"), artifact_path="evaluation")
        for a, c in ev.curves.items():
            c.to_csv(tmp / f"curve_{name}_{a}.csv", index=False)
            mlflow.log_artifact(str(tmp / f"curve_{name}_{a}.csv"), artifact_path="curves")
        import base64

        for kind, png in plot_outcome(ev).items():
            (tmp / f"{name}_{kind}.png").write_bytes(base64.b64decode(png))
            mlflow.log_artifact(str(tmp / f"{name}_{kind}.png"), artifact_path="plots")
        for a, q in ev.qini.items():
            if np.isfinite(q):
                mlflow.log_metric(f"qini.{name}.{a}", float(q))
        for _, r in ev.policies.iterrows():
            mlflow.log_metric(f"{r['method']}.{name}.{r['policy'].replace(':', '.')}", float(r["value"]))


def reference_sample(data: LoggedSet, n: int, seed: int = 0) -> pd.DataFrame | None:
    """KEYS + feature columns of a sample of the training rows: the drift reference other models log too."""
    if data.keys is None:
        return None
    ref = pd.concat([data.keys.reset_index(drop=True), data.X.reset_index(drop=True)], axis=1)
    return ref.sample(min(len(ref), n), random_state=seed).reset_index(drop=True)


def train_offer(cfg: Config, as_of: pd.Timestamp, *, seed: int = 0, tune: bool = True) -> dict[str, Any]:
    """`rebuy train offer`: learn from the decision log, register `rebuy-offer` (@challenger), and make it
    @champion only if its DR lower bound beats the current policy on held-out decisions.

    `tune`: base-learner params from the shared Optuna study (`optuna_tuner`); off, the fixed BASE_PARAMS.
    """
    import tempfile

    import mlflow
    from rich.progress import Progress

    from training.registry import CHALLENGER, client, record_alias_move

    with Progress(transient=True) as bar:
        task = bar.add_task(f"reading decisions, orders and {FEATURE_SERVICE} features", total=2)
        data = offer_data(cfg, as_of)
        current, champ_version = _current_policy(cfg)
        bar.update(task, advance=1, description="tuning, learning conversion and margin, valuing policies")
        fitted = learn_offer_model(
            data.train,
            data.test,
            cfg.offers,
            seed=seed,
            current=current,
            tune=optuna_tuner(cfg, seed=seed) if tune else None,
        )
        bar.update(task, advance=1)
    model, conv, marg = fitted.model, fitted.conversion, fitted.margin
    model.meta.update({"as_of": str(as_of), "decisions": data.n_decisions})
    promoted, reason = promotion_decision(marg)
    cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_registry_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-offer"))
    c = client(cfg)
    with tempfile.TemporaryDirectory() as tmp_s, mlflow.start_run(run_name="offer") as run:
        tmp = Path(tmp_s)
        mlflow.log_params(
            {
                "feature_service": FEATURE_SERVICE,
                "decisions": data.n_decisions,
                "as_of": str(as_of),
                "learner_conversion": model.meta["learners"][CONVERSION],
                "learner_margin": model.meta["learners"][MARGIN],
                "shrink": model.meta["shrink"] if model.meta["shrink"] is not None else "n/a",
                "margin_path": model.meta["margin_path"],
                "margin_path_rule": model.meta["path_rule"],
                "tuned": bool(fitted.tuning),
                **{f"base_{k}": v for k, v in (fitted.tuning.get("best_params") or {}).items()},
            }
        )
        for s, v in fitted.shrink_values.items():
            mlflow.log_metric(f"valid_dr_margin_shrink_{s:g}", v)
        # the margin paths' paired DR comparison on the validation rows (candidate − incumbent)
        for _, r in fitted.paths.iterrows():
            for k in ("value", "low", "high", "dr"):
                mlflow.log_metric(f"valid_dr_path.{r['path']}.{k}", float(r[k]))
        (tmp / "margin_paths.json").write_text(
            fitted.paths.to_json(orient="records", indent=2), encoding="utf-8"
        )
        mlflow.log_artifact(str(tmp / "margin_paths.json"), artifact_path="info")
        _log_evaluation({CONVERSION: conv, MARGIN: marg}, tmp)
        if fitted.tuning:
            (tmp / "optuna_study.json").write_text(json.dumps(fitted.tuning, indent=2, default=str), "utf-8")
            mlflow.log_artifact(str(tmp / "optuna_study.json"), artifact_path="info")
        ref = reference_sample(data.train, cfg.drift.reference_sample, seed)
        if ref is not None:
            ref.to_parquet(tmp / "reference.parquet", index=False)
            mlflow.log_artifact(str(tmp / "reference.parquet"), artifact_path="reference")
        model.save(tmp / "offer_model")
        mlflow.log_artifacts(str(tmp / "offer_model"), artifact_path="offer_model")
        mlflow.set_tags({"gate_promoted": str(promoted), "gate_reason": reason})
        run_id = run.info.run_id
        source = f"{run.info.artifact_uri}/offer_model"
    try:
        c.get_registered_model(REGISTERED_NAME)
    except Exception:  # MlflowException: not registered yet
        c.create_registered_model(REGISTERED_NAME)
    version = str(c.create_model_version(REGISTERED_NAME, source, run_id=run_id).version)
    c.set_registered_model_alias(REGISTERED_NAME, CHALLENGER, version)
    c.set_model_version_tag(REGISTERED_NAME, version, "gate_reason", reason)
    if promoted:
        record_alias_move(cfg, REGISTERED_NAME, version, reason=f"gate: {reason}", actor="training")
    return {
        "version": version,
        "promoted": promoted,
        "reason": reason,
        "run_id": run_id,
        "previous_champion": champ_version,
        "recommendation": marg.recommendation,
        "learners": {**model.meta["learners"], "shrink": model.meta["shrink"]},
        "margin_path": model.meta["margin_path"],
    }


def evaluate_policy(
    cfg: Config, as_of: pd.Timestamp, version: str | None = None, *, promote: bool = True
) -> dict[str, Any]:
    """`rebuy evaluate-policy`: uplift metrics and IPS/SNIPS/DR values of a candidate offer model (default
    @challenger) against the current policy and every constant policy on held-out decisions; promotes it
    to @champion only if its DR lower bound beats the current policy. Curves and values go to MLflow."""
    import tempfile

    import mlflow

    from training.registry import CHALLENGER, alias_version, record_alias_move

    version = version or alias_version(cfg, REGISTERED_NAME, CHALLENGER)
    if version is None:
        raise RebuyError(f"no {REGISTERED_NAME} candidate to evaluate; run `rebuy train offer` first")
    cand = load_offer_version(cfg, version)
    data = offer_data(cfg, as_of)
    current, champ_version = _current_policy(cfg, exclude_version=version)
    conv = evaluate_uplift(cand.conversion, data.test, NONE, CONVERSION)
    marg = evaluate_uplift(cand.margin, data.test, NONE, MARGIN, current=current)
    ok, reason = promotion_decision(marg)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-offer"))
    with (
        tempfile.TemporaryDirectory() as tmp_s,
        mlflow.start_run(run_name=f"evaluate-policy v{version}") as run,
    ):
        mlflow.log_params(
            {
                "candidate_version": version,
                "current": champ_version or "logging policy",
                "as_of": str(as_of),
                "promote": ok,
            }
        )
        _log_evaluation({CONVERSION: conv, MARGIN: marg}, Path(tmp_s))
        run_id = run.info.run_id
    if ok and promote and champ_version != version:
        record_alias_move(
            cfg, REGISTERED_NAME, version, reason=f"evaluate-policy: {reason}", actor="evaluate-policy"
        )
    return {
        "version": version,
        "current": champ_version,
        "promoted": bool(ok and promote),
        "reason": reason,
        "run_id": run_id,
        "policies": marg.policies,
        "qini": marg.qini,
        "uplift_at_k": marg.uplift_at_k,
    }


__all__ = [
    "CONVERSION",
    "FEATURE_SERVICE",
    "KS",
    "MARGIN",
    "MARGIN_PATHS",
    "MIN_BASKET_ROWS",
    "N_ORDERS",
    "PATH_RULES",
    "REGISTERED_NAME",
    "REVENUE",
    "SHRINK_GRID",
    "Current",
    "Economics",
    "LoggedSet",
    "MarginModel",
    "OfferData",
    "OfferFit",
    "OfferModel",
    "OutcomeEvaluation",
    "_actions",
    "_basket",
    "_current_policy",
    "_log_evaluation",
    "_on_policy",
    "_policy_rows",
    "arm_costs",
    "choose_margin_path",
    "choose_shrink",
    "customer_time_split",
    "decision_outcomes",
    "evaluate_policy",
    "evaluate_uplift",
    "fit_margin_model",
    "hash_split",
    "learn_and_evaluate",
    "learn_offer_model",
    "load_offer_champion",
    "load_offer_version",
    "logged_from_decisions",
    "measured_effects",
    "net_of_cost",
    "offer_data",
    "one_hot",
    "optuna_tuner",
    "personalised_actions",
    "promotion_decision",
    "read_decision_log",
    "realised_margin",
    "recommend",
    "reference_sample",
    "restrict",
    "split_logged",
    "train_offer",
]
