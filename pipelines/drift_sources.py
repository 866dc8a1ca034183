"""Where drift's reference and current rows come from, and how a drifted model is retrained (adapters).

Imports run one way: this module imports `pipelines.drift` (the analysis), never the reverse; the
command line and the demo pass `load_model_source` / `train_model` to `run_drift` / `run_retrain`.

Reference: the champion's features at the seven midnights up to its training date (`trained_as_of`, from
the cutoffs of its logged training sample `reference/reference.parquet`), recomputed from the canonical
tables with its feature definitions, its population, scored by it. Of all rows of the training era these
are the nearest to what is served: only the weeks since training age them, and `pipelines.drift`
matches the rest on tenure (why: "Age structure" there, measured in benchmarks/results/drift-age.md).

Current, in order of preference:
1. served rows from the serving prediction log (`serving.prediction_log.read(cfg)`), last
   `drift.current_window_days`, on the reference cutoffs' weekdays, latest such row per customer, when
   it has rows for the model;
2. otherwise features recomputed from the canonical tables at the midnights of the window that fall
   on the reference cutoffs' weekdays (so the weekday mix matches by construction), restricted to the
   model's population and scored by the champion.
Matured labels: served predictions whose horizon has passed by `--as-of`, of holdout and control
customers only (`untreated_matured`: treatment changes the outcome they would be judged on), judged
against the champion's own test figures (`champion_test_figures`). Without a prediction log, rows
recomputed at the latest midnight one horizon before `--as-of` stand in, and the note says so.

The offer model (`rebuy-offer`) learns from randomized decisions, so its population is not "every
customer" but the customers the orchestrator decided on with a choice of offers. Its reference is the
logged sample of those training rows (features at the midnight before each decision); its current rows
are the randomized decisions of the last `drift.current_window_days`, with features recomputed at the
same midnights (so no time-of-day mismatch). Its predictions are the estimated incremental margin of
each offer (`margin__<offer>`): the served estimates from the decision log where the champion version
served them, else the champion's estimates on the recomputed features. Its quality is an off-policy
value, not a per-row label: `rebuy evaluate-policy` measures it, drift does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.drift import REFERENCE_ARTIFACT, ModelSource, Roles, hour_sensitive
from rebuy.config import Config
from rebuy.errors import NoChampionError, RebuyError

OFFER = "offer"
MONITORED_MODELS: tuple[str, ...] = ("churn", "repurchase", "days_to_next", "value", OFFER)
MARGIN_PREFIX = "margin__"
TENURE = "tenure_days"


def window_cutoffs(reference_cutoffs: pd.Series, as_of: pd.Timestamp, window_days: int) -> list[pd.Timestamp]:
    """Midnights in (as_of − window, as_of] on the weekdays of the reference's cutoffs (the latest one if none)."""
    end = as_of.floor("D")
    days = [end - pd.Timedelta(days=i) for i in range(window_days)]
    weekdays = set(reference_cutoffs.dt.dayofweek.unique()) if len(reference_cutoffs) else set()
    picked = sorted(d for d in days if d.dayofweek in weekdays)
    return picked or [end]


def matured_cutoff(
    reference_cutoffs: pd.Series, as_of: pd.Timestamp, horizon_days: int
) -> pd.Timestamp | None:
    """The latest reference-weekday midnight whose label window is over by as_of and that the model never saw."""
    last_seen = reference_cutoffs.max() if len(reference_cutoffs) else None
    day = (as_of - pd.Timedelta(days=horizon_days)).floor("D")
    weekdays = set(reference_cutoffs.dt.dayofweek.unique()) or {day.dayofweek}
    while day.dayofweek not in weekdays:
        day -= pd.Timedelta(days=1)
    if last_seen is not None and day <= last_seen:
        return None
    return day


def trained_as_of(
    reference_cutoffs: pd.Series,
    horizon_days: int,
    cfg: Config,
    as_of: pd.Timestamp,
    maturity_days: int | None = None,
) -> pd.Timestamp:
    """The champion's training date, from its training rows (training.split, features.training_set.cutoff_grid).

    The last training cutoff is purged to one horizon before the first validation cutoff (the next lattice
    point), which is followed by the other validation and test cutoffs, and the last of those by one
    maturity. A lower bound (the grid may end up to a step earlier than its maturity strictly requires), so
    the reference never reaches past the data the model was trained with; capped at `as_of`.
    """
    if not len(reference_cutoffs):
        return as_of.floor("D")
    step = pd.Timedelta(days=cfg.features.cutoff_step_days)
    purge = int(np.ceil(horizon_days / cfg.features.cutoff_step_days))
    later = cfg.training.valid_cutoffs + cfg.training.test_cutoffs - 1
    mature = pd.Timedelta(days=maturity_days if maturity_days is not None else horizon_days)
    return min(reference_cutoffs.max() + (purge + later) * step + mature, as_of.floor("D"))


def reference_cutoffs(trained: pd.Timestamp) -> list[pd.Timestamp]:
    """The seven midnights up to the training date: every weekday once, nearest the serving period."""
    return [trained.floor("D") - pd.Timedelta(days=i) for i in reversed(range(7))]


UNTREATED = ("control", "holdout")


def untreated_matured(
    served: pd.DataFrame, decisions: pd.DataFrame, horizon_days: int, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Served rows whose label has matured by `as_of`, of holdout and control customers only. Pure.

    A customer counts when the decision log has them in a control or holdout group and no treatment decision
    from `horizon_days` before the score to the end of its label window: treatment changes the outcome the
    score would be judged on. One row per customer (the latest matured score), as the reference has.
    """
    h = pd.Timedelta(days=horizon_days)
    rows = served[served["scored_at"] + h <= as_of]
    if rows.empty or decisions.empty:
        return rows.iloc[:0]
    d = decisions[["customer_id", "decided_at", "group"]].copy()
    d["customer_id"] = d["customer_id"].astype(str)
    untreated_ids = set(d.loc[d["group"].isin(UNTREATED), "customer_id"])
    rows = rows[rows["customer_id"].astype(str).isin(untreated_ids)]
    treated = d[~d["group"].isin(UNTREATED)]
    if len(rows) and len(treated):
        m = rows[["customer_id", "scored_at"]].reset_index().merge(treated, on="customer_id")
        hit = m[(m["decided_at"] > m["scored_at"] - h) & (m["decided_at"] <= m["scored_at"] + h)]
        rows = rows[~rows.index.isin(hit["index"])]
    return rows.sort_values("scored_at").drop_duplicates("customer_id", keep="last").reset_index(drop=True)


def _features_at(
    cfg: Config, tables: dict[str, pd.DataFrame], cutoffs: list[pd.Timestamp] | pd.DataFrame
) -> pd.DataFrame:
    """Features (and their request-time columns) at every customer × cutoff, or at given (customer_id, cutoff) pairs."""
    from features.compute import compute_features, epoch_seconds, request_time_features

    f = cfg.features
    feats = compute_features(
        tables,
        cutoffs,
        burst_minutes=f.burst_window_minutes,
        recent_days=f.engagement_recent_days,
        baseline_days=f.engagement_baseline_days,
    )
    for name, values in request_time_features(feats, epoch_seconds(feats["cutoff"])).items():
        feats[name] = values
    return feats


def _in_population(frame: pd.DataFrame, population: str | None, orders: pd.DataFrame) -> pd.DataFrame:
    if not population or frame.empty:
        return frame
    from training.run import with_rfm

    return with_rfm(frame, orders).query(population).reset_index(drop=True)


def _score(bundle: Any, frame: pd.DataFrame, where: str) -> np.ndarray:
    missing = [c for c in bundle.feature_names if c not in frame.columns]
    if missing:
        raise RebuyError(
            f"{where} lacks features of {bundle.name} v{bundle.version}: {missing[:5]}; what to do: "
            "the feature definitions changed since training — retrain (`rebuy train`) before monitoring"
        )
    return np.asarray(bundle.predict(frame[bundle.feature_names].to_numpy(dtype=np.float64)), dtype=float)


def _served_rows(
    cfg: Config,
    model: str,
    reg: str,
    as_of: pd.Timestamp,
    weekdays: set[int] | None = None,
    *,
    log: pd.DataFrame | None = None,
) -> pd.DataFrame | None:
    """Served rows of the window, one per customer: the latest on one of `weekdays` (the reference's)."""
    log = log if log is not None else _served_log(cfg, model, reg)
    if log is None or log.empty:
        return None
    window = pd.Timedelta(days=cfg.drift.current_window_days)
    rows = log[
        log["model"].isin([model, reg]) & (log["scored_at"] > as_of - window) & (log["scored_at"] <= as_of)
    ]
    if weekdays:
        # weekdays first, then the latest: taking each customer's latest score first leaves, for a reference
        # with one cutoff weekday, only the few customers not scored again after that weekday (43 of 5,000
        # after the demo loop), a biased remnant
        rows = rows[rows["scored_at"].dt.dayofweek.isin(sorted(weekdays))]
    if rows.empty:
        return None
    # one row per customer (the latest score): the reference has one row per customer and cutoff, and a
    # customer scored twenty times a day must not outweigh one scored once
    rows = rows.sort_values("scored_at").drop_duplicates("customer_id", keep="last")
    return rows.rename(columns={"scored_at": "cutoff", "score": "prediction"}).reset_index(drop=True)


def load_reference(cfg: Config, registered: str, version: str) -> pd.DataFrame:
    """The logged training sample of one registered version (MLflow artifact of its run)."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from training.registry import client

    mv = client(cfg).get_model_version(registered, version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp, tracking_uri=cfg.mlflow_uri
            )
        except (MlflowException, OSError) as exc:
            raise RebuyError(
                f"{registered} v{version}: its run {mv.run_id} has no {REFERENCE_ARTIFACT}; what to do: retrain "
                "with this version of rebuy, whose training logs the reference sample"
            ) from exc
        return pd.read_parquet(path)


def champion_test_figures(cfg: Config, registered: str, version: str) -> dict[str, float]:
    """The champion's held-out test metrics (AUC, positive rate, MAE) and test row count, from its run."""
    import json
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from training.registry import client

    c = client(cfg)
    run_id = c.get_model_version(registered, version).run_id
    metrics = c.get_run(run_id).data.metrics
    out = {k: float(metrics[k]) for k in ("roc_auc", "positive_rate", "mae", "ece") if k in metrics}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="info/split.json", dst_path=tmp, tracking_uri=cfg.mlflow_uri
            )
            out["test_rows"] = float(json.loads(Path(path).read_text(encoding="utf-8")).get("test_rows", 0))
        except (MlflowException, OSError, ValueError):
            out["test_rows"] = 0.0
    return out


def _served_log(cfg: Config, model: str, reg: str) -> pd.DataFrame | None:
    try:
        from serving import prediction_log
    except ImportError:
        return None
    log = prediction_log.read(cfg)
    if log is None or log.empty:
        return None
    rows = log[log["model"].isin([model, reg])]
    return rows if len(rows) else None


def load_model_source(cfg: Config, model: str, as_of: pd.Timestamp) -> ModelSource:
    """Reference, current and matured rows of one model from the registry, prediction log or canonical tables.

    Reference: the champion's features at the seven midnights up to its training date (recomputed from the
    canonical tables with its definitions, its population, scored by it): of all training-era rows the
    nearest to what is served, so only the weeks since training age them (see "Age structure" in
    pipelines.drift). The logged training sample gives the training date.
    """
    from features.labels import compute_labels
    from rebuy.ingest import read_canonical
    from training.registry import load_champion, registered_name
    from training.specs import get_spec

    if model == OFFER:
        return load_offer_source(cfg, as_of)
    spec = get_spec(cfg, model)
    reg = registered_name(model)
    bundle = load_champion(cfg, model)
    feats = list(bundle.feature_names)
    logged = load_reference(cfg, reg, bundle.version)
    logged_cutoffs = pd.to_datetime(logged["cutoff"], utc=True)
    trained = trained_as_of(logged_cutoffs, spec.horizon_days, cfg, as_of, spec.maturity_days)
    tables = read_canonical(cfg.paths.data_dir)
    ref_days = reference_cutoffs(trained)
    reference = _in_population(_features_at(cfg, tables, ref_days), spec.population, tables["orders"])
    reference["prediction"] = _score(
        bundle, reference, f"{reg} v{bundle.version}'s features at its training date"
    )
    notes: list[str] = [
        f"reference = the champion's features at {ref_days[0]:%Y-%m-%d} … {ref_days[-1]:%Y-%m-%d} (the week up to "
        f"its training date, {len(reference)} rows), scored by it"
    ]

    log = _served_log(cfg, model, reg)
    current = None
    if log is not None:
        current = _served_rows(
            cfg, model, reg, as_of, set(reference["cutoff"].dt.dayofweek.unique()), log=log
        )
    if current is not None:
        where = f"prediction log ({cfg.paths.runtime_dir}), last {cfg.drift.current_window_days} days"
    else:
        cutoffs = window_cutoffs(reference["cutoff"], as_of, cfg.drift.current_window_days)
        current = _in_population(_features_at(cfg, tables, cutoffs), spec.population, tables["orders"])
        current["prediction"] = _score(bundle, current, "features recomputed from the canonical tables")
        where = f"features at {', '.join(f'{c:%Y-%m-%d}' for c in cutoffs)} (no served rows in the window)"
        notes.append(f"current = {where}, scored by the champion")

    labelled = None
    h = pd.Timedelta(days=spec.horizon_days)
    if log is not None:
        matured = untreated_matured(log, _decision_log(cfg), spec.horizon_days, as_of)
        if len(matured):
            matured = matured.rename(columns={"score": "prediction"})
            pairs = matured[["customer_id", "scored_at"]].rename(columns={"scored_at": "cutoff"})
            labels = compute_labels(tables["orders"], pairs, cfg.horizons, as_of)
            matured[spec.label] = labels[spec.label].to_numpy()
            labelled = matured.rename(columns={"scored_at": "cutoff"})
            notes.append(
                f"labels matured: {len(matured)} served predictions of holdout/control customers scored up to "
                f"{(as_of - h):%Y-%m-%d} ({spec.horizon_days}-day horizon)"
            )
        else:
            first = log["scored_at"].min()
            notes.append(
                f"labels not matured yet: served predictions mature {spec.horizon_days} days after scoring; the "
                f"first (scored {first:%Y-%m-%d}) matures on {(first + h):%Y-%m-%d}"
            )
    else:
        day = matured_cutoff(logged_cutoffs, as_of, spec.horizon_days)
        if day is None:
            notes.append("no out-of-time cutoff with matured labels yet: performance not measured")
        else:
            rows = _in_population(_features_at(cfg, tables, [day]), spec.population, tables["orders"])
            labels = compute_labels(tables["orders"], rows[["customer_id", "cutoff"]], cfg.horizons, as_of)
            rows[spec.label] = labels[spec.label].to_numpy()
            rows["prediction"] = _score(bundle, rows, f"matured rows at {day:%Y-%m-%d}")
            labelled = rows
            notes.append(
                f"no served predictions logged: matured labels of {len(rows)} rows recomputed at {day:%Y-%m-%d} "
                "(all customers, treated ones included)"
            )

    roles = Roles(
        features=tuple(feats),
        hour_sensitive=hour_sensitive(feats),
        prediction="prediction",
        target=spec.label,
        timestamp="cutoff",
        task="binary" if spec.is_binary else "regression",
        horizon_days=spec.horizon_days,
        tenure=TENURE if TENURE in feats else None,
    )
    return ModelSource(
        model=model,
        reference=reference,
        current=current,
        roles=roles,
        version=bundle.version,
        reference_name=f"{reg} v{bundle.version} features at its training date",
        current_name=where,
        labelled=labelled,
        notes=tuple(notes),
        champion=champion_test_figures(cfg, reg, bundle.version)
        if labelled is not None and log is not None
        else None,
    )


# --- the offer model --------------------------------------------------------------------------------------


def margin_columns(offers: Sequence[str]) -> list[str]:
    return [f"{MARGIN_PREFIX}{o}" for o in offers if o != "none"]


def offer_margins(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's estimated incremental margin of each offer per row (`margin__<offer>`), frame's index."""
    missing = [c for c in model.feature_names if c not in frame.columns]
    if missing:
        raise RebuyError(
            f"rows lack features of rebuy-offer v{model.version}: {missing[:5]}; what to do: the feature "
            "definitions changed since training — retrain (`rebuy train offer`) before monitoring"
        )
    est = model.predict(frame[list(model.feature_names)].to_numpy(dtype=np.float64))
    return pd.DataFrame(
        {f"{MARGIN_PREFIX}{o}": np.asarray(est[o][1], dtype=float) for o in model.offers if o != "none"},
        index=frame.index,
    )


def _randomized(distribution: Any) -> bool:
    """More than one action had a chance: the rows the offer model learns from (as training.offer selects)."""
    return isinstance(distribution, Mapping) and sum(1 for v in distribution.values() if v and v > 0) > 1


def offer_current_rows(
    decisions: pd.DataFrame, as_of: pd.Timestamp, window_days: int, version: str, offers: Sequence[str]
) -> pd.DataFrame:
    """Randomized decisions in (as_of − window, as_of]: decision_id, customer_id, cutoff (the midnight
    before the decision, as training takes its features), and `margin__<offer>` as served where the
    champion `version` served them (NaN elsewhere, to be estimated). Pure."""
    cols = ["decision_id", "customer_id", "cutoff", *margin_columns(offers)]
    if decisions.empty:
        return pd.DataFrame(columns=cols)
    at = pd.to_datetime(decisions["decided_at"], utc=True)
    keep = (at > as_of - pd.Timedelta(days=window_days)) & (at <= as_of)
    keep &= decisions["distribution"].map(_randomized).astype(bool)
    d = decisions.loc[keep]
    out = pd.DataFrame(
        {
            "decision_id": d["decision_id"].to_numpy(),
            "customer_id": d["customer_id"].astype(str).to_numpy(),
            "cutoff": at[keep].dt.floor("D").to_numpy(),
        }
    )
    out["cutoff"] = pd.to_datetime(out["cutoff"], utc=True)
    scores = d["scores"] if "scores" in d.columns else pd.Series([{}] * len(d), index=d.index)
    served_by = (
        d["model_versions"].map(lambda mv: str((mv or {}).get(OFFER, "")))
        if "model_versions" in d.columns
        else pd.Series([""] * len(d), index=d.index)
    )
    same = (served_by == str(version)).to_numpy()
    for o in offers:
        if o == "none":
            continue
        est = scores.map(lambda sc, o=o: ((sc or {}).get("offer_estimates") or {}).get(o)).to_numpy()
        out[f"{MARGIN_PREFIX}{o}"] = np.where(same, pd.to_numeric(est, errors="coerce"), np.nan)
    return out[cols].reset_index(drop=True)


def _decision_log(cfg: Config) -> pd.DataFrame:
    import sqlalchemy as sa

    from pipelines.decision_log import engine_for, read_decisions

    engine = engine_for(cfg.decision_log_url, create=False)
    try:
        if not sa.inspect(engine).has_table("decisions"):
            return pd.DataFrame()
        with engine.connect() as conn:
            return read_decisions(conn)
    finally:
        engine.dispose()


def _offer_features(cfg: Config, pairs: pd.DataFrame) -> pd.DataFrame:
    from rebuy.ingest import read_canonical

    return _features_at(cfg, read_canonical(cfg.paths.data_dir), pairs)


def load_offer_source(cfg: Config, as_of: pd.Timestamp) -> ModelSource:
    """Reference and current rows of the @champion offer model (see the module docstring)."""
    from training.offer import REGISTERED_NAME, load_offer_champion

    model = load_offer_champion(cfg)
    if model is None:
        raise NoChampionError(
            f"no @champion for {REGISTERED_NAME} in {cfg.mlflow_uri}: no offer policy has passed the promotion "
            "gate yet (its DR lower bound must beat the current policy and sending nothing). `rebuy train offer` "
            "trains a candidate once randomized decisions have matured and prints why the gate kept or refused it"
        )
    feats = list(model.feature_names)
    offers = [o for o in model.offers if o != "none"]
    margins = margin_columns(offers)
    reference = load_reference(cfg, REGISTERED_NAME, model.version)
    reference["cutoff"] = pd.to_datetime(reference["cutoff"], utc=True)
    reference[margins] = offer_margins(model, reference)
    window = cfg.drift.current_window_days
    rows = offer_current_rows(_decision_log(cfg), as_of, window, model.version, offers)
    if rows.empty:
        raise RebuyError(
            f"no randomized decisions in the {window} days before {as_of:%Y-%m-%d %H:%M} in "
            f"{cfg.decision_log_url}: nothing current to compare {REGISTERED_NAME} with; what to do: run "
            "`rebuy run` / `rebuy loop`, or pass an --as-of inside a period with decisions"
        )
    pairs = rows[["customer_id", "cutoff"]].drop_duplicates().reset_index(drop=True)
    feats_now = _offer_features(cfg, pairs)
    current = rows.merge(
        feats_now.drop(columns=margins, errors="ignore"), on=["customer_id", "cutoff"], how="left"
    )
    served = current[margins].notna().all(axis=1).to_numpy()
    if (~served).any():
        current.loc[~served, margins] = offer_margins(model, current.loc[~served]).to_numpy()
    cutoffs = sorted(set(pairs["cutoff"]))
    where = f"{len(current)} randomized decisions of the last {window} days ({cfg.decision_log_url})"
    notes = (
        f"current = {where}, features at the midnight before each decision "
        f"({cutoffs[0]:%Y-%m-%d} … {cutoffs[-1]:%Y-%m-%d})",
        f"offer margins: {int(served.sum())} rows as served by v{model.version}, {int((~served).sum())} "
        "estimated by the champion on the recomputed features",
        "performance: the offer model's quality is an off-policy value (`rebuy evaluate-policy`), not measured here",
    )
    roles = Roles(
        features=tuple(feats),
        predictions=tuple(margins),
        timestamp="cutoff",
        hour_sensitive=hour_sensitive(feats),
    )
    return ModelSource(
        model=OFFER,
        reference=reference,
        current=current,
        roles=roles,
        version=model.version,
        reference_name=f"MLflow {REGISTERED_NAME} v{model.version} {REFERENCE_ARTIFACT}",
        current_name=where,
        notes=notes,
    )


def train_model(cfg: Config, model: str, as_of: pd.Timestamp) -> Mapping[str, Any]:
    """Retrain one model through the training pipeline and its champion gate; what the gate decided."""
    from training.run import train_command
    from training.specs import TRAIN_GROUPS

    if model == "offer":
        from training.offer import train_offer

        return dict(train_offer(cfg, as_of))
    group = next((g for g, names in TRAIN_GROUPS.items() if g != "all" and model in names), None)
    if group is None:
        raise RebuyError(f"no training group trains {model!r}; known: {sorted(TRAIN_GROUPS)}")
    runs = train_command(cfg, group, as_of)
    out = runs.get(model)
    if out is None:
        return {"trained": False, "reason": "the training pipeline returned no run for this model"}
    o = out.outcome
    return {
        "trained": True,
        "version": o.version,
        "promoted": o.promoted,
        "gate_reason": o.reason,
        "challenger_metric": o.challenger_metric,
        "champion_metric": o.champion_metric,
        "champion_version": o.champion_version,
        "group": group,
    }


__all__ = [
    "MONITORED_MODELS",
    "OFFER",
    "champion_test_figures",
    "load_model_source",
    "load_offer_source",
    "load_reference",
    "margin_columns",
    "matured_cutoff",
    "offer_current_rows",
    "offer_margins",
    "reference_cutoffs",
    "train_model",
    "trained_as_of",
    "untreated_matured",
    "window_cutoffs",
]
