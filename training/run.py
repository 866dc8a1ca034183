"""The `rebuy train` stage: read canonical tables, build each spec's training set, train, log, gate.

A thin adapter around the pure pipeline: all data access (canonical Parquet, Feast via
features.training_set, MLflow) happens here or in training.tracking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from rebuy.config import Config
from rebuy.errors import RebuyError
from training.baselines import rfm_at
from training.pipeline import TrainResult, train
from training.specs import TRAIN_GROUPS, ModelSpec, default_specs, resolve_features
from training.split import spec_grid
from training.tracking import RunOutcome, log_run
from training.yardstick import CeilingFn

# (test rows with customer_id, cutoff; spec) -> the same rows with an `oracle` column (None: no oracle)
OracleFn = Callable[[pd.DataFrame, ModelSpec], pd.DataFrame | None]


def simulator_oracle(sim: Any) -> OracleFn:
    """The shop simulator's truth API as the oracle of each spec (simulated data only)."""

    def oracle(keys: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame | None:
        if spec.label == "churn":
            t = sim.truth_at(keys, horizon_days=spec.horizon_days)
            value = 1.0 - t["p_order"]
        elif spec.label == "repurchase":
            value = sim.truth_at(keys, horizon_days=spec.horizon_days)["p_order"]
        elif spec.label == "spend_next":
            value = sim.truth_at(keys, horizon_days=spec.horizon_days, spend_days=spec.horizon_days)[
                "expected_spend"
            ]
        elif spec.label == "days_to_next_order":
            cap = int(spec.cap_days or spec.horizon_days)
            value = sim.truth_at(keys, horizon_days=spec.horizon_days, spend_days=cap)[
                "expected_days_to_next_order"
            ]
        else:
            return None
        return keys.assign(oracle=value.to_numpy())

    return oracle


@dataclass(frozen=True)
class ModelRun:
    result: TrainResult
    outcome: RunOutcome


def known_services() -> dict[str, list[str]]:
    """FeatureService name -> model feature columns, from the Feast definitions in features/."""
    from features.feature_repo.definitions import VERSIONS, service_features

    names = [f"{m}_{v}" for v, models in VERSIONS.items() for m in models]
    return {n: [f for _, f in service_features(n)] for n in names}


def with_rfm(training_set: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Add the order-history summary the population filter and the baselines use."""
    return _merge_rfm(training_set, rfm_at(orders, training_set[["customer_id", "cutoff"]].drop_duplicates()))


def _merge_rfm(training_set: pd.DataFrame, rfm: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in rfm.columns if c.startswith("rfm_") and c in training_set.columns]
    return training_set.drop(columns=drop).merge(rfm, on=["customer_id", "cutoff"], how="left")


def train_specs(
    cfg: Config,
    names: Sequence[str],
    training_sets: Mapping[str, pd.DataFrame],
    services: Mapping[str, Sequence[str]],
    *,
    oracle: OracleFn | None = None,
    show_progress: bool = True,
    register: bool = True,
    grids: Mapping[str, Sequence[pd.Timestamp]] | None = None,
    ceilings: CeilingFn | None = None,
) -> dict[str, ModelRun | TrainResult]:
    """Train the named specs on prepared training sets (keyed by FeatureService), log and gate each.

    `grids` (spec name -> cutoffs) restricts a spec to its own cutoffs when several specs with different
    horizons share one training set; without it every cutoff of the set is used. `ceilings` (simulated
    data: training.yardstick.Yardstick.predict) adds the observable and trait ceilings to the quality table.
    """
    specs = default_specs(cfg)
    out: dict[str, ModelRun | TrainResult] = {}
    for name in names:
        spec = specs[name]
        feats = resolve_features(spec, services)
        ts = training_sets[spec.feature_service]
        if grids is not None and name in grids:
            ts = ts[ts["cutoff"].isin(pd.DatetimeIndex(list(grids[name])))]
        orc = None if oracle is None else _for_spec(oracle, spec)
        result = train(
            cfg, spec, ts, orc, feature_names=feats, show_progress=show_progress, ceilings=ceilings
        )
        out[name] = ModelRun(result, log_run(cfg, result)) if register else result
    return out


def _for_spec(oracle: OracleFn, spec: ModelSpec) -> Callable[[pd.DataFrame], pd.DataFrame | None]:
    """The oracle bound to one spec: the pipeline asks it for test keys only."""

    def bound(keys: pd.DataFrame) -> pd.DataFrame | None:
        return oracle(keys, spec)

    return bound


def train_command(
    cfg: Config,
    which: str,
    as_of: pd.Timestamp,
    *,
    oracle: OracleFn | None = None,
    show_progress: bool = True,
) -> dict[str, ModelRun]:
    """`rebuy train WHICH`: one training set per FeatureService, shared by the specs that use it."""
    if which not in TRAIN_GROUPS:
        raise RebuyError(f"unknown model group {which!r}; use one of {sorted(TRAIN_GROUPS)}")
    from rebuy.ingest import read_canonical

    services = known_services()
    specs = default_specs(cfg)
    names = list(TRAIN_GROUPS[which])
    for n in names:
        resolve_features(specs[n], services)  # fail before any expensive work
    tables = read_canonical(cfg.paths.data_dir)
    sets, grids = training_sets(cfg, names, tables, as_of, show_progress=show_progress)
    runs = train_specs(cfg, names, sets, services, oracle=oracle, show_progress=show_progress, grids=grids)
    return {k: v for k, v in runs.items() if isinstance(v, ModelRun)}


def training_sets(
    cfg: Config,
    names: Sequence[str],
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp,
    *,
    show_progress: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict[str, list[pd.Timestamp]]]:
    """The training sets of the named specs (keyed by FeatureService, with rfm_* columns) and each spec's grid.

    Each spec's cutoffs end at its own label maturity before `as_of` (features.training_set.cutoff_grid);
    the grids share one lattice, so the snapshots of all services are computed once, over their union.
    Pass both to `train_specs(..., grids=grids)`.
    """
    try:
        from features.training_set import build_training_set, data_end
    except ImportError as exc:
        raise RebuyError(
            f"the features stage is not available ({exc}); training needs features.training_set"
        ) from exc
    specs = default_specs(cfg)
    # labels are known up to the latest order/event: a grid ending later would lose its last cutoffs
    end = min(pd.Timestamp(as_of).tz_convert("UTC"), data_end(tables))
    grids = {n: spec_grid(cfg, end, specs[n]) for n in names}
    build_snapshot_grid(cfg, tables, sorted(set().union(*grids.values())), show_progress=show_progress)
    built: dict[str, pd.DataFrame] = {}
    for svc in dict.fromkeys(specs[n].feature_service for n in names):
        cut = sorted({c for n in names if specs[n].feature_service == svc for c in grids[n]})
        built[svc] = build_training_set(cfg, svc, cut, dict(tables), as_of=end, build=False)
    # the services share their (customer, cutoff) rows: the order-history summary is computed once
    pairs = pd.concat([ts[["customer_id", "cutoff"]] for ts in built.values()]).drop_duplicates()
    rfm = rfm_at(tables["orders"], pairs)
    return {svc: _merge_rfm(ts, rfm) for svc, ts in built.items()}, grids


def build_snapshot_grid(
    cfg: Config,
    tables: Mapping[str, pd.DataFrame],
    cutoffs: Sequence[pd.Timestamp],
    *,
    chunk: int = 6,
    show_progress: bool = True,
) -> None:
    """Feature snapshots at every cutoff of the run, computed once for all services, a few cutoffs at a time.

    Chunks keep memory flat on large shops (all cutoffs at once would hold every customer x cutoff row).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from features.store import build as build_snapshots

    with Progress(
        TextColumn("[bold]feature snapshots"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} cutoffs"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("snapshots", total=len(cutoffs))
        for i in range(0, len(cutoffs), chunk):
            part = list(cutoffs[i : i + chunk])
            build_snapshots(cfg, dict(tables), part)
            progress.advance(task, len(part))


QUALITY_COLUMNS = ("roc_auc", "pr_auc", "ece", "brier", "lift_at_10", "mae", "rmse", "spearman")


def quality_rows(runs: Mapping[str, ModelRun | TrainResult]) -> list[dict[str, object]]:
    """One row per (model, scorer): the model, its baselines and the oracle on the same test rows."""
    rows: list[dict[str, object]] = []
    for name, run in runs.items():
        res = run.result if isinstance(run, ModelRun) else run
        for who, m in res.quality.items():
            rows.append({"model": name, "scorer": who, **{k: m.get(k) for k in QUALITY_COLUMNS if k in m}})
    return rows


def render(runs: Mapping[str, ModelRun], console: Console) -> None:
    table = Table(title="test-set quality (same rows per model)")
    for col in ("model", "scorer", *QUALITY_COLUMNS):
        table.add_column(col, justify="right" if col in QUALITY_COLUMNS else "left")
    for r in quality_rows(runs):
        table.add_row(
            str(r["model"]),
            str(r["scorer"]),
            *("" if r.get(c) is None else f"{r[c]:.4f}" for c in QUALITY_COLUMNS),
        )
    console.print(table)
    for name, run in runs.items():
        o = run.outcome
        verdict = "[green]@champion[/]" if o.promoted else "[yellow]@challenger only[/]"
        console.print(f"{name}: {o.registered_name} v{o.version} {verdict} — {o.reason}")
