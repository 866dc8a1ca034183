"""Feast definitions: entity `customer`, one feature view per family, request-time features, FeatureServices.

The definitions are built by a function of the offline directory rather than at import time, because
the offline data lives under each data directory (`cfg.paths.feast_dir`), not in the source tree.
The same objects run on any Feast offline/online store: only `feature_store.yaml` changes.

Offline rows are feature snapshots (features.compute at a snapshot time, `event_timestamp` = the
snapshot time), so Feast's as-of join at a cutoff returns exactly the features as of that cutoff.
Each feature view's source is a PushSource over that snapshot file: the batch path (materialize) and
the push path (fresh events between batches) land in the same online table.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.types import Float64
from feast.value_type import ValueType

from features.compute import FAMILIES, REQUEST_TIME

ENTITY = "customer"
JOIN_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"
REQUEST_SOURCE = "request_context"
REQUEST_TS = "request_ts"  # request time, seconds since the epoch (UTC); the cutoff in training
ODFV = "request_time"
SERVICE_VERSION = "v2"  # the version the shipped model specs train on

# Why each family exists (also stored as the feature view's description).
WHY: dict[str, str] = {
    "order_history": "Recency, frequency, spend and the customer's own purchase cycle: the base of churn and value.",
    "view_bursts": "Purchase intent shows up as bursts of views just before an order (short windows, must be fresh).",
    "lookups": "Looking up one's own orders and delivery options with a view burst: the strongest rebuy signal.",
    "engagement": "Engagement fades against the customer's own baseline before they churn.",
    "activity": "Silence since the last order against the customer's own lifetime rhythm: still there or gone?",
    "contact": "Messages already received, how they were answered and unsubscribes: one message too many loses.",
}
# Families each versioned service uses: the train/serve contract. Changing one means a new version, and
# old versions stay defined so the models trained on them keep being served. Per version: model ->
# (families, request-time features; None = all of them).
V1_REQUEST_TIME = (
    "days_since_last_order",
    "overdue_ratio",
    "days_since_order_history_view",
    "days_since_delivery_check",
    "days_since_engagement",
)
# v2's request-time features as they were when churn/repurchase/value v2 shipped (before the contact family)
V2_REQUEST_TIME = (
    *V1_REQUEST_TIME,
    "days_since_event",
    "engagement_overdue",
)
VERSIONS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]]] = {
    "v1": {
        "churn": (("order_history", "engagement", "lookups"), V1_REQUEST_TIME),
        "repurchase": (("order_history", "view_bursts", "lookups", "engagement"), V1_REQUEST_TIME),
        "value": (("order_history", "engagement"), V1_REQUEST_TIME),
        "offer": (("order_history", "view_bursts", "lookups", "engagement"), V1_REQUEST_TIME),
    },
    # v2 adds the activity family (lifetime rhythm vs silence since the last order): measured on
    # simulated shops it lifts churn and repurchase AUC by ~0.01 (benchmarks/results/train*.md)
    "v2": {
        "churn": (("order_history", "engagement", "lookups", "activity"), V2_REQUEST_TIME),
        "repurchase": (
            ("order_history", "view_bursts", "lookups", "engagement", "activity"),
            V2_REQUEST_TIME,
        ),
        "value": (("order_history", "engagement", "activity"), V2_REQUEST_TIME),
        # offer_v2 adds contact history (features.contact): the effect of one more message depends on the
        # messages already received (benchmarks/results/loop.md: after three campaigns most offers hurt)
        "offer": (("order_history", "view_bursts", "lookups", "engagement", "activity", "contact"), None),
    },
}
# the services of the current version (what `rebuy train` uses): model -> families
SERVICES: dict[str, tuple[str, ...]] = {m: fams for m, (fams, _) in VERSIONS[SERVICE_VERSION].items()}


def service_name(model: str) -> str:
    return f"{model}_{SERVICE_VERSION}"


def model_features(family: str) -> list[str]:
    """Stored features a model sees: raw instants (`*_at`) only feed request-time features."""
    return [f for f in FAMILIES[family] if not f.endswith("_at")]


def offline_path(offline_dir: Path, family: str) -> Path:
    return Path(offline_dir) / f"{family}.parquet"


def request_time_udf(inputs: dict[str, Any]) -> dict[str, Any]:
    """Days since the last order/lookup/engagement at request time, so online values are never stale.

    Self-contained (imports inside, literal names): Feast may rebuild the udf from its source text.
    """
    import numpy as np

    from features.compute import REQUEST_TIME, request_time_features

    needed = {src for src, _ in REQUEST_TIME.values()} | {d for _, d in REQUEST_TIME.values() if d}
    stored = {k: np.asarray(inputs[k], dtype=np.float64) for k in needed}
    out = request_time_features(stored, np.asarray(inputs["request_ts"], dtype=np.float64))
    return {k: [float(x) for x in v] for k, v in out.items()}


def definitions(offline_dir: Path) -> dict[str, Any]:
    """Every Feast object by name: entity, sources, feature views, the on-demand view, the services."""
    customer = Entity(
        name=ENTITY,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="A shop customer, id as given by the shop.",
    )
    objects: dict[str, Any] = {ENTITY: customer}
    views: dict[str, FeatureView] = {}
    for family, columns in FAMILIES.items():
        batch = FileSource(
            name=f"{family}_snapshots",
            path=str(offline_path(offline_dir, family)),
            timestamp_field=TIMESTAMP_FIELD,
        )
        push = PushSource(name=f"{family}_push", batch_source=batch)
        views[family] = FeatureView(
            name=family,
            entities=[customer],
            ttl=timedelta(0),  # snapshots are complete at each snapshot time; the latest one always applies
            schema=[Field(name=c, dtype=Float64) for c in columns],
            source=push,
            online=True,
            description=WHY[family],
        )
        objects.update({batch.name: batch, push.name: push, family: views[family]})
    request = RequestSource(name=REQUEST_SOURCE, schema=[Field(name=REQUEST_TS, dtype=Float64)])
    instants = sorted({src for src, _ in REQUEST_TIME.values()} | {d for _, d in REQUEST_TIME.values() if d})
    inputs = [
        views[f][[c for c in cols if c in instants]]
        for f, cols in FAMILIES.items()
        if any(c in instants for c in cols)
    ]
    # Built directly rather than with the @on_demand_feature_view decorator, which rewrites the
    # function's __module__ (global state); here the udf stays an importable module-level function.
    request_time = OnDemandFeatureView(
        name=ODFV,
        sources=[*inputs, request],
        schema=[Field(name=n, dtype=Float64) for n in REQUEST_TIME],
        mode="python",
        udf=request_time_udf,  # type: ignore[arg-type]  # a plain module-level function
        udf_string=inspect.getsource(request_time_udf),
        description="Recency computed at request time from stored instants (never a day stale online).",
    )
    objects[request.name] = request
    objects[ODFV] = request_time
    for version, models in VERSIONS.items():
        for model, (families, request_features) in models.items():
            name = f"{model}_{version}"
            rt = request_time if request_features is None else request_time[list(request_features)]
            objects[name] = FeatureService(
                name=name,
                features=[*(views[f][model_features(f)] for f in families), rt],
                description=f"Features of the {model} model, version {version} (the train/serve contract).",
            )
    return objects


def service_features(service: str) -> list[tuple[str, str]]:
    """(feature view, feature) pairs of a service in model column order, without touching any store."""
    objects = definitions(Path("."))
    if service not in objects or not isinstance(objects[service], FeatureService):
        known = [n for n, o in objects.items() if isinstance(o, FeatureService)]
        from rebuy.errors import RebuyError

        raise RebuyError(f"unknown FeatureService {service!r}; known: {known}")
    out: list[tuple[str, str]] = []
    for proj in objects[service].feature_view_projections:
        out.extend((proj.name, f.name) for f in proj.features)
    return out
