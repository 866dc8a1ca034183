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

**The online-store interface** (`OnlineRows`): every rebuy path that touches the online store —
materialize, push, serving's reads, forget — goes through it, never through a store's file or client
directly. Rows are exchanged in one representation, whatever the store: per (feature view, customer) a
float64 vector in the view's feature order (`ViewLayout.names`; NaN = missing) and the row's event time.
`open_rows(repo_config)` picks the implementation from feature_store.yaml: `SqliteRows` here (the packed
tables above) or `features.redis_store.RedisRows` (Feast's own Redis layout, so Feast's reader agrees).
By customer id: `write_features`, `read_features`, `delete_customers`.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from rebuy.errors import RebuyError

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
            self._rebuy_conn = connect(db_path(config))
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


def db_path(config: RepoConfig) -> Path:
    """The SQLite online store's file (feature_store.yaml's path, relative to the repository)."""
    path = Path(config.online_store.path)
    if config.repo_path and not path.is_absolute():
        return Path(config.repo_path) / path
    return path


@dataclass(frozen=True)
class ViewLayout:
    """A feature view as the online store keeps it: Feast's (versioned) view name, rebuy's SQLite table name
    and the feature order of its packed rows."""

    name: str
    table: str
    names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.names)


def view_layout(config: RepoConfig, view: FeatureView) -> ViewLayout:
    from feast.infra.online_stores.helpers import compute_versioned_name

    versioned = config.registry.enable_online_feature_view_versioning
    return ViewLayout(compute_versioned_name(view, versioned), table_name(config, view), tuple(layout(view)))


# (view index in the request, entity key, packed <f8 row in the view's layout, event time in epoch seconds)
Row = tuple[int, bytes, bytes, float | None]


class OnlineRows(ABC):
    """rebuy's online-store interface: whole packed rows per (feature view, customer), by entity key.

    Implementations are thread-safe for reads. `write` replaces a customer's row of each view it is given
    (the latest write wins, as with Feast's stock stores); `read` returns only the rows that exist;
    `delete` removes the customers' rows of the given views and returns how many rows it removed.
    Entity keys are Feast's serialized keys (`entity_keys`).
    """

    @abstractmethod
    def prepare(self, views: Sequence[ViewLayout]) -> None:
        """Make the views writable (tables, layouts); idempotent."""

    @abstractmethod
    def write(
        self,
        views: Sequence[ViewLayout],
        keys: Sequence[bytes],
        blocks: Sequence[np.ndarray],
        event_ts: Sequence[int],
        created: int,
    ) -> None:
        """One float64 block [len(keys), view.width] per view; event times in epoch seconds per key."""

    @abstractmethod
    def read(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> list[Row]:
        """The stored rows of `keys` in every view (keys distinct)."""

    @abstractmethod
    def delete(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> int:
        """Remove the keys' rows of every view; returns the rows removed."""

    def drop(self, views: Sequence[ViewLayout]) -> None:  # noqa: B027 - optional
        """Remove whole views (a view deleted from the definitions)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class SqliteRows(OnlineRows):
    """The packed SQLite tables (the module docstring): one primary-key statement for every view per read."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, read_only=read_only)
        self.lock = threading.Lock()
        # how many SQL variables one statement may bind (SQLite's limit, 32766 by default)
        self.max_vars = max(1, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 1)
        self._sql: dict[tuple[tuple[str, ...], int], str] = {}

    def close(self) -> None:
        self.conn.close()

    def prepare(self, views: Sequence[ViewLayout]) -> None:
        with self.lock, self.conn:
            for v in views:
                ensure_table(self.conn, v.table, v.names)

    def drop(self, views: Sequence[ViewLayout]) -> None:
        with self.lock, self.conn:
            for v in views:
                self.conn.execute(f'DROP TABLE IF EXISTS "{v.table}"')
                self.conn.execute(f'DELETE FROM "{LAYOUT_TABLE}" WHERE table_name = ?', (v.table,))

    def write(
        self,
        views: Sequence[ViewLayout],
        keys: Sequence[bytes],
        blocks: Sequence[np.ndarray],
        event_ts: Sequence[int],
        created: int,
    ) -> None:
        created_col = [created] * len(keys)
        for v, block in zip(views, blocks, strict=True):
            raw = np.ascontiguousarray(block, dtype="<f8").tobytes()
            width = 8 * v.width
            rows = zip(
                keys,
                (raw[i : i + width] for i in range(0, len(raw), width)),
                event_ts,
                created_col,
                strict=True,
            )
            with self.lock, self.conn:  # one transaction per view and chunk
                self.conn.executemany(_UPSERT.format(table=v.table), rows)

    def _statement(self, tables: tuple[str, ...], n_keys: int) -> str:
        """One statement for n keys across the views (cached: sqlite3 then reuses its prepared form)."""
        sql = self._sql.get((tables, n_keys))
        if sql is None:
            marks = ",".join("?" * n_keys)
            sql = " UNION ALL ".join(
                f'SELECT {i}, entity_key, vals, event_ts FROM "{t}" WHERE entity_key IN ({marks})'
                for i, t in enumerate(tables)
            )
            if len(self._sql) < 64:
                self._sql[(tables, n_keys)] = sql
        return sql

    def read(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> list[Row]:
        tables = tuple(v.table for v in views)
        n, n_tables = len(keys), len(tables)
        if not n or not n_tables:
            return []
        per = max(1, self.max_vars // n_tables)
        keys = list(keys)
        with self.lock:
            return [
                r
                for i in range(0, n, per)
                for r in self.conn.execute(
                    self._statement(tables, len(keys[i : i + per])), keys[i : i + per] * n_tables
                )
            ]

    def delete(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> int:
        removed = 0
        keys = list(keys)
        with self.lock, self.conn:
            present = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for v in views:
                if v.table not in present:
                    continue
                for i in range(0, len(keys), 900):
                    part = keys[i : i + 900]
                    cur = self.conn.execute(
                        f'DELETE FROM "{v.table}" WHERE entity_key IN ({",".join("?" * len(part))})', part
                    )
                    removed += cur.rowcount
        return removed


def is_redis(config: RepoConfig) -> bool:
    return str(config.online_store.type) in ("redis", "features.redis_store.RebuyRedisOnlineStore")


def open_rows(config: RepoConfig, *, read_only: bool = False) -> OnlineRows:
    """The online store feature_store.yaml names, behind rebuy's interface."""
    kind = str(config.online_store.type)
    if is_redis(config):
        from features.redis_store import RedisRows

        return RedisRows.from_repo_config(config)
    if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
        return SqliteRows(db_path(config), read_only=read_only)
    raise RebuyError(
        f"online store type {kind!r} in feature_store.yaml is not one rebuy reads and writes; "
        'use [stores] online_store = "sqlite" or a redis:// URL'
    )


def store_layouts(store: FeatureStore, views: Sequence[FeatureView] | None = None) -> list[ViewLayout]:
    views = list(views) if views is not None else store.list_feature_views()
    return [view_layout(store.config, v) for v in views]


def write_features(
    store: FeatureStore,
    features: pd.DataFrame,
    *,
    chunk: int = 50_000,
    progress: Progress | None = None,
    views: Sequence[FeatureView] | None = None,
    rows: OnlineRows | None = None,
) -> int:
    """Bulk upsert of computed features (customer_id, cutoff, feature columns) into the online store.

    event_ts is each row's snapshot time (`cutoff`), the freshness the reader reports. `progress` may be a
    rich Progress; `views` saves a registry read when the caller already holds them (the push path), `rows`
    an open store (kept open). Returns the customers written.
    """
    ts_col = "cutoff" if "cutoff" in features else TIMESTAMP_FIELD
    stamps = (pd.DatetimeIndex(features[ts_col]).as_unit("ns").asi8 // 10**9).tolist()
    created = int(pd.Timestamp.now(tz="UTC").timestamp())
    keys = entity_keys(features[JOIN_KEY].tolist(), entity_key_prefix())
    layouts = store_layouts(store, views)
    n = len(features)
    task = progress.add_task("online store", total=n * len(layouts)) if progress is not None else None
    target = rows if rows is not None else open_rows(store.config)
    try:
        target.prepare(layouts)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            part = features.iloc[start:stop]
            blocks = [part[list(v.names)].to_numpy(dtype="<f8") for v in layouts]
            target.write(layouts, keys[start:stop], blocks, stamps[start:stop], created)
            if progress is not None and task is not None:
                progress.advance(task, (stop - start) * len(layouts))
    finally:
        if rows is None:
            target.close()
    return n


def read_features(
    store: FeatureStore, customer_ids: Sequence[str], views: Sequence[FeatureView] | None = None
) -> pd.DataFrame:
    """The stored rows of these customers, one row per customer found: customer_id, every view's features
    (NaN where missing) and `event_ts` (the oldest of the customer's views, epoch seconds)."""
    layouts = store_layouts(store, views)
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    keys = entity_keys(ids, entity_key_prefix())
    rows = open_rows(store.config, read_only=True)
    try:
        got = rows.read(layouts, keys)
    finally:
        rows.close()
    names = [n for v in layouts for n in v.names]
    offsets = np.cumsum([0] + [v.width for v in layouts])
    row_of = {k: i for i, k in enumerate(keys)}
    mat = np.full((len(keys), len(names)), np.nan)
    found = np.zeros(len(keys), dtype=bool)
    oldest = np.full(len(keys), np.inf)
    for t, key, vals, ts in got:
        i = row_of[key]
        mat[i, offsets[t] : offsets[t + 1]] = np.frombuffer(vals, dtype="<f8")
        found[i] = True
        if ts is not None:
            oldest[i] = min(oldest[i], float(ts))
    out = pd.DataFrame(mat, columns=names)
    out.insert(0, JOIN_KEY, ids)
    out["event_ts"] = oldest
    return out.loc[found].reset_index(drop=True)


def delete_customers(store: FeatureStore, customer_ids: Sequence[str]) -> int:
    """Remove the customers from every view of the online store; returns the rows removed."""
    keys = entity_keys([str(c) for c in customer_ids], entity_key_prefix())
    rows = open_rows(store.config)
    try:
        return rows.delete(store_layouts(store), keys)
    finally:
        rows.close()
