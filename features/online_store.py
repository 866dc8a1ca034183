"""rebuy's SQLite online store: Feast's OnlineStore interface, one packed row per (feature view, customer).

Feast's stock SQLite store keeps one row per feature value, runs one `execute` per value and builds
a ValueProto per value: ~860 customers/s to materialize (DESIGN.md, measured). This store, registered
in feature_store.yaml (`type: features.online_store.RebuySqliteOnlineStore`), keeps a feature view's
values for a customer as one little-endian float64 vector in the view's feature order:
- `FeatureStore.get_online_features` / `write_to_online_store` / push sources work unchanged through
  `online_read` / `online_write_batch` (same semantics: the latest write per customer wins, a missing
  value is null);
- `write_features` (features.store.materialize) writes a whole DataFrame with one `executemany` of
  `n` rows per view, straight from the float64 matrix, with no protos;
- features.online reads the same rows with one query per view.
All of rebuy's stored features are Float64 (the definitions say so), which is what makes the packing exact.
A table's feature layout is recorded in `rebuy_layout`; a view whose features change is recreated.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from features.feature_repo.definitions import JOIN_KEY, TIMESTAMP_FIELD

if TYPE_CHECKING:
    from feast import Entity, FeatureStore, FeatureView
    from feast.infra.infra_object import InfraObject
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from feast.repo_config import RepoConfig
    from rich.progress import Progress

LAYOUT_TABLE = "rebuy_layout"
_UPSERT = 'INSERT OR REPLACE INTO "{table}" (entity_key, vals, event_ts, created_ts) VALUES (?, ?, ?, ?)'


class RebuySqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.online_store.RebuySqliteOnlineStore"] = (
        "features.online_store.RebuySqliteOnlineStore"  # type: ignore[assignment]
    )


def connect(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A plain connection (no type detection); WAL so readers keep reading while a batch is written."""
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def table_name(config: RepoConfig, view: FeatureView) -> str:
    return compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)


def layout(view: FeatureView) -> list[str]:
    return [f.name for f in view.features]


def ensure_table(conn: sqlite3.Connection, table: str, names: Sequence[str]) -> None:
    """Create the packed table; recreate it when the view's features (the packing order) changed."""
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{LAYOUT_TABLE}" (table_name TEXT PRIMARY KEY, names TEXT)')
    want = ",".join(names)
    row = conn.execute(f'SELECT names FROM "{LAYOUT_TABLE}" WHERE table_name = ?', (table,)).fetchone()
    if row is not None and row[0] != want:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
    if cols and "vals" not in cols:  # a stock Feast SQLite table from another set-up
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    conn.execute(
        f'CREATE TABLE IF NOT EXISTS "{table}" (entity_key BLOB PRIMARY KEY, vals BLOB, event_ts INTEGER, '
        "created_ts INTEGER) WITHOUT ROWID"
    )
    conn.execute(f'INSERT OR REPLACE INTO "{LAYOUT_TABLE}" VALUES (?, ?)', (table, want))


def _epoch_s(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp())


def value_to_float(val: ValueProto) -> float:
    kind = val.WhichOneof("val")
    if kind is None or kind == "null_val":
        return float("nan")
    v = getattr(val, kind)
    return float(v) if isinstance(v, (int, float, bool)) else float("nan")


class RebuySqliteOnlineStore(SqliteOnlineStore):
    """The OnlineStore interface over packed rows (see the module docstring)."""

    _rebuy_conn: sqlite3.Connection | None = None

    def _plain_conn(self, config: RepoConfig) -> sqlite3.Connection:
        if self._rebuy_conn is None:
            self._rebuy_conn = connect(self._get_db_path(config))
        return self._rebuy_conn

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self._plain_conn(config)
        with conn:
            for view in tables_to_keep:
                ensure_table(conn, table_name(config, view), layout(view))
            for view in tables_to_delete:
                conn.execute(f'DROP TABLE IF EXISTS "{table_name(config, view)}"')
                conn.execute(
                    f'DELETE FROM "{LAYOUT_TABLE}" WHERE table_name = ?', (table_name(config, view),)
                )

    def plan(self, config: RepoConfig, desired_registry_proto: RegistryProto) -> list[InfraObject]:
        # tables are created by `update` in the packed layout, not by Feast's stock SqliteTable objects
        return []

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        if self._rebuy_conn is not None:
            self._rebuy_conn.close()
            self._rebuy_conn = None
        super().teardown(config, tables, entities)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Whole rows per customer: features absent from a write are stored as missing."""
        names = layout(table)
        version = config.entity_key_serialization_version
        rows = []
        for key, values, ts, created in data:
            vec = np.array([value_to_float(values[n]) if n in values else np.nan for n in names], dtype="<f8")
            rows.append(
                (
                    serialize_entity_key(key, entity_key_serialization_version=version),
                    vec.tobytes(),
                    _epoch_s(ts),
                    _epoch_s(created),
                )
            )
        conn = self._plain_conn(config)
        with conn:
            conn.executemany(_UPSERT.format(table=table_name(config, table)), rows)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        names = layout(table)
        wanted = [
            (i, n) for i, n in enumerate(names) if requested_features is None or n in requested_features
        ]
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys]
        found = read_rows(self._plain_conn(config), table_name(config, table), keys)
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            hit = found.get(key)
            if hit is None:
                out.append((None, None))
                continue
            vec, ts = hit
            values = {
                n: ValueProto() if np.isnan(vec[i]) else ValueProto(double_val=float(vec[i]))
                for i, n in wanted
            }
            out.append((datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None, values))
        return out


def read_rows(
    conn: sqlite3.Connection, table: str, keys: Sequence[bytes]
) -> dict[bytes, tuple[np.ndarray, int]]:
    """entity key -> (float64 vector in layout order, event_ts seconds) for the keys present."""
    if not keys:
        return {}
    rows = conn.execute(
        f'SELECT entity_key, vals, event_ts FROM "{table}" WHERE entity_key IN ({",".join("?" * len(keys))})',
        list(keys),
    ).fetchall()
    return {k: (np.frombuffer(v, dtype="<f8"), ts) for k, v, ts in rows}


def entity_key_prefix() -> bytes:
    """The constant head of a serialized (v3) `customer_id` entity key; the id's length and bytes follow."""
    full = serialize_entity_key(
        EntityKeyProto(join_keys=[JOIN_KEY], entity_values=[ValueProto(string_val="")]),
        entity_key_serialization_version=3,
    )
    return full[: len(full) - 4]  # drop the trailing length (0) of the empty id


def entity_keys(customer_ids: Sequence[str], prefix: bytes) -> list[bytes]:
    """Serialized entity keys, byte-identical to Feast's (checked in tests), without building protos."""
    pack = struct.Struct("<I").pack
    out = []
    for cid in customer_ids:
        b = str(cid).encode("utf-8")
        out.append(prefix + pack(len(b)) + b)
    return out


def write_features(
    store: FeatureStore,
    features: pd.DataFrame,
    *,
    chunk: int = 50_000,
    progress: Progress | None = None,
    views: Sequence[FeatureView] | None = None,
) -> int:
    """Bulk upsert of computed features (customer_id, cutoff, feature columns) into the online tables.

    event_ts is each row's snapshot time (`cutoff`), the freshness the reader reports. One transaction
    per view and chunk. `progress` may be a rich Progress; `views` saves a registry read when the caller
    already holds them (the push path). Returns the customers written.
    """
    cfg = store.config
    ts_col = "cutoff" if "cutoff" in features else TIMESTAMP_FIELD
    stamps = (pd.DatetimeIndex(features[ts_col]).as_unit("ns").asi8 // 10**9).tolist()
    created = int(pd.Timestamp.now(tz="UTC").timestamp())
    keys = entity_keys(features[JOIN_KEY].tolist(), entity_key_prefix())
    views = list(views) if views is not None else store.list_feature_views()
    n = len(features)
    task = progress.add_task("online store", total=n * len(views)) if progress is not None else None
    conn = connect(SqliteOnlineStore._get_db_path(cfg))
    try:
        for view in views:
            names = layout(view)
            table = table_name(cfg, view)
            with conn:
                ensure_table(conn, table, names)
            width = 8 * len(names)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                raw = np.ascontiguousarray(features[names].iloc[start:stop].to_numpy(dtype="<f8")).tobytes()
                rows = zip(
                    keys[start:stop],
                    (raw[i : i + width] for i in range(0, len(raw), width)),
                    stamps[start:stop],
                    [created] * (stop - start),
                    strict=True,
                )
                with conn:
                    conn.executemany(_UPSERT.format(table=table), rows)
                if progress is not None and task is not None:
                    progress.advance(task, stop - start)
    finally:
        conn.close()
    return n
