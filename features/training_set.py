"""Point-in-time training sets: rolling cutoffs, features via Feast's as-of join, labels after each cutoff.

The features of a row are retrieved with `get_historical_features` for the model's FeatureService
(the same service serving reads online), from snapshots computed at exactly the cutoffs; the labels
come from orders strictly after the cutoff (features.labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.compute import FAMILIES, customer_pairs, epoch_seconds, request_time_features
from features.engine import SqlEngine, engine_for
from features.feature_repo.definitions import JOIN_KEY, REQUEST_TS, TIMESTAMP_FIELD, service_features
from features.labels import LABELS, compute_labels
from rebuy.config import Config
from rebuy.errors import DataError

if TYPE_CHECKING:
    from feast import FeatureStore


def feature_names(cfg: Config, service: str) -> list[str]:
    """The service's feature columns in model column order (the FeatureService's projection order)."""
    del cfg  # the order is fixed by the definitions, not by the data directory
    return [feature for _, feature in service_features(service)]


def cutoff_grid(cfg: Config, as_of: pd.Timestamp, horizon_days: int | None = None) -> list[pd.Timestamp]:
    """Rolling cutoffs every `cutoff_step_days` over `history_days`, midnight UTC, ascending.

    Each model's grid ends at its own horizon: the latest cutoffs whose label window (c, c + h] is over
    by `as_of` (`horizon_days`, default the longest of cfg.horizons), so a 30-day model is tested on data
    150 days fresher than a 180-day one. All grids lie on one lattice (every step back from the latest
    midnight the shortest horizon allows), so the models of one run share their feature snapshots: the
    union of the grids costs a few more snapshots, not one set per model. The price is that a grid may
    end up to `cutoff_step_days - 1` days before its horizon strictly requires.
    """
    as_of = pd.Timestamp(as_of).tz_convert("UTC")
    hz = cfg.horizons
    h = horizon_days if horizon_days is not None else max(hz.churn_days, hz.repurchase_days, hz.value_days)
    shortest = min(hz.churn_days, hz.repurchase_days, hz.value_days, h)
    anchor = (as_of - pd.Timedelta(days=shortest)).floor("D")
    if anchor + pd.Timedelta(days=shortest) > as_of:
        anchor -= pd.Timedelta(days=1)
    step = pd.Timedelta(days=cfg.features.cutoff_step_days)
    behind = max(pd.Timedelta(0), anchor + pd.Timedelta(days=h) - as_of)
    last = anchor - step * int(np.ceil(behind / step))
    n = cfg.features.history_days // cfg.features.cutoff_step_days + 1
    return [last - step * i for i in reversed(range(n))]


def data_end(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The latest order or event: labels are only known up to here, whatever the as-of of the run."""
    ends = [tables["orders"]["ordered_at"].max()]
    events = tables.get("events")
    if events is not None and len(events):
        ends.append(events["occurred_at"].max())
    known = [e for e in ends if pd.notna(e)]
    if not known:
        raise DataError(
            "there are no orders or events, so no label can be known",
            file="orders",
            hint="import the shop's orders first (rebuy import)",
        )
    return max(known)


def build_training_set(
    cfg: Config,
    service: str,
    cutoffs: Sequence[pd.Timestamp],
    tables: dict[str, pd.DataFrame],
    *,
    as_of: pd.Timestamp | None = None,
    build: bool = True,
) -> pd.DataFrame:
    """One row per (customer_id, cutoff) with the service's features and the label columns.

    Rows: every customer signed up by each cutoff. `as_of` is the end of the observed data (default:
    the latest order/event); label windows not over by then are NaN. Side effect: the feature
    snapshots at the cutoffs are stored as the offline source (features.store.write_offline).
    `build=False` skips that when the caller has just built them (several services, one set of cutoffs).
    """
    from features import store as feast_io

    if not len(cutoffs):
        raise DataError(
            "no cutoffs to build a training set at",
            hint="the data may be shorter than the label horizon; see features.training_set.cutoff_grid",
        )
    names = feature_names(cfg, service)
    pairs = customer_pairs(tables["customers"], list(cutoffs))
    if not len(pairs):
        raise DataError("no customer had signed up by any cutoff", hint="check the cutoffs against the data")
    fs = feast_io.apply(cfg)
    if build:
        feast_io.build(cfg, tables, cutoffs)
    engine = engine_for(cfg)
    if engine is not None:  # Spark: the as-of join over the snapshots partitioned by cutoff
        hist = _spark_point_in_time(cfg, engine, pairs, names)
    else:
        hist = _feast_point_in_time(fs, service, pairs)
    labels = compute_labels(
        tables["orders"], pairs, cfg.horizons, as_of if as_of is not None else data_end(tables), con=engine
    )
    out = labels.merge(
        hist[[JOIN_KEY, "cutoff", *names]], on=[JOIN_KEY, "cutoff"], how="left", validate="1:1"
    )
    out = out[[JOIN_KEY, "cutoff", *names, *LABELS]]
    out[names] = out[names].astype(np.float64)
    return out.sort_values(["cutoff", JOIN_KEY], kind="stable").reset_index(drop=True)


def _feast_point_in_time(fs: FeatureStore, service: str, pairs: pd.DataFrame) -> pd.DataFrame:
    entity_df = pd.DataFrame(
        {
            JOIN_KEY: pairs[JOIN_KEY].to_numpy(),
            TIMESTAMP_FIELD: pairs["cutoff"].to_numpy(),
            REQUEST_TS: epoch_seconds(pairs["cutoff"]),
        }
    )
    hist = fs.get_historical_features(entity_df=entity_df, features=fs.get_feature_service(service)).to_df()
    hist[TIMESTAMP_FIELD] = pd.to_datetime(hist[TIMESTAMP_FIELD], utc=True).dt.as_unit("ns")
    return hist.rename(columns={TIMESTAMP_FIELD: "cutoff"})


def _spark_point_in_time(
    cfg: Config, engine: SqlEngine, pairs: pd.DataFrame, names: list[str]
) -> pd.DataFrame:
    """The service's features as of each pair from the Spark snapshots, request-time ones as Feast adds them."""
    from features.spark import SparkEngine, point_in_time
    from features.store import snapshot_dir

    if not isinstance(engine, SparkEngine):
        raise TypeError(f"no point-in-time join for engine {engine.name!r}")
    stored = [c for fam in FAMILIES.values() for c in fam]
    hist = point_in_time(engine, snapshot_dir(cfg), pairs, stored)
    for name, values in request_time_features(hist, epoch_seconds(hist["cutoff"])).items():
        hist[name] = values
    return hist[[JOIN_KEY, "cutoff", *names]]
