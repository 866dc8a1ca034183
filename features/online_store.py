"""rebuy's SQLite online store: Feast's table layout and read semantics, with a fast write path.

Feast's stock SQLite store runs one `execute` per feature value and builds a ValueProto per value,
which caps materialization near 860 customers/s (DESIGN.md, measured). This store is registered in
feature_store.yaml (`type: features.online_store.RebuySqliteOnlineStore`), keeps the stock tables,
keys and value encoding (so `FeatureStore.get_online_features` reads it unchanged), and writes:
- through Feast (`write_to_online_store`, push sources): one `executemany` per batch;
- in bulk (`write_features`, used by features.store.materialize): values encoded straight from a
  float64 matrix to ValueProto bytes (double_val) without building protos.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from features.compute import FAMILIES
from features.feature_repo.definitions import JOIN_KEY, TIMESTAMP_FIELD

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_config import RepoConfig

_DOUBLE_TAG = b"\x29"  # ValueProto field 5 (double_val), wire type 1 (64-bit)
_UPSERT = (
    'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
    "VALUES (?, ?, ?, NULL, ?, ?) "
    "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
    "value_text = NULL, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
)


class RebuySqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.online_store.RebuySqliteOnlineStore"] = (  # type: ignore[assignment]
        "features.online_store.RebuySqliteOnlineStore"
    )


def _epoch_s(ts: datetime | None) -> int | None:
    """What the stock store writes for a timestamp: whole seconds since the epoch, naive UTC."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp())


class RebuySqliteOnlineStore(SqliteOnlineStore):
    """Stock SqliteOnlineStore reads, tables and `update`; batched writes."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        if config.online_store.vector_enabled or getattr(config.online_store, "enable_openai_compatible_store", False):
            return super().online_write_batch(config, table, data, progress)
        conn = self._get_conn(config)
        name = compute_table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        version = config.entity_key_serialization_version
        rows = [
            (serialize_entity_key(key, entity_key_serialization_version=version), fname, val.SerializeToString(),
             _epoch_s(ts), _epoch_s(created))
            for key, values, ts, created in data
            for fname, val in values.items()
        ]
        with conn:
            conn.executemany(_UPSERT.format(table=name), rows)
        if progress:
            progress(len(data))


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


def encode_doubles(values: np.ndarray) -> list[bytes]:
    """Serialized ValueProto per float64 value (double_val); NaN becomes the empty (null) Value."""
    values = np.ascontiguousarray(values, dtype="<f8").ravel()
    buf = np.empty((len(values), 9), dtype=np.uint8)
    buf[:, 0] = _DOUBLE_TAG[0]
    buf[:, 1:] = values.view(np.uint8).reshape(-1, 8)
    raw = buf.tobytes()
    out = [raw[i : i + 9] for i in range(0, len(raw), 9)]
    for i in np.flatnonzero(np.isnan(values)):
        out[i] = b""
    return out


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")  # readers (serving) keep reading while a batch is written
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def write_features(
    store: FeatureStore, features: pd.DataFrame, *, chunk: int = 20_000, progress: object | None = None
) -> int:
    """Bulk upsert of computed features (customer_id, cutoff, feature columns) into the online tables.

    event_ts is each row's snapshot time (`cutoff`), the freshness the reader reports. Each family is
    one transaction per chunk. `progress` may be a rich Progress; returns the customers written.
    """
    cfg = store.config
    path = SqliteOnlineStore._get_db_path(cfg)
    prefix = entity_key_prefix()
    ts_col = "cutoff" if "cutoff" in features else TIMESTAMP_FIELD
    stamps = (pd.DatetimeIndex(features[ts_col]).as_unit("ns").asi8 // 10**9).astype(np.int64)
    now_s = int(pd.Timestamp.now(tz="UTC").timestamp())
    n = len(features)
    task = progress.add_task("online store", total=n * len(FAMILIES)) if progress is not None else None  # type: ignore[attr-defined]
    conn = _connect(path)
    try:
        for family, columns in FAMILIES.items():
            view = store.get_feature_view(family)
            table = compute_table_id(cfg.project, view, cfg.registry.enable_online_feature_view_versioning)
            sql = _UPSERT.format(table=table)
            names = list(columns)
            for start in range(0, n, chunk):
                part = features.iloc[start : start + chunk]
                keys = entity_keys(part[JOIN_KEY].tolist(), prefix)
                vals = encode_doubles(part[names].to_numpy(dtype=np.float64))
                ts = stamps[start : start + chunk].tolist()
                k = len(names)
                rows = (
                    (keys[i // k], names[i % k], vals[i], ts[i // k], now_s) for i in range(len(vals))
                )
                with conn:
                    conn.executemany(sql, rows)
                if task is not None:
                    progress.advance(task, len(part))  # type: ignore[attr-defined]
    finally:
        conn.close()
    return n


def decode_value(raw: bytes | None) -> float:
    """A stored ValueProto as float64: the double fast path, anything numeric via protobuf, null -> NaN."""
    if not raw:
        return float("nan")
    if len(raw) == 9 and raw[0] == 0x29:
        return struct.unpack_from("<d", raw, 1)[0]
    val = ValueProto.FromString(raw)
    kind = val.WhichOneof("val")
    if kind is None or kind == "null_val":
        return float("nan")
    v = getattr(val, kind)
    return float(v) if isinstance(v, (int, float, bool)) else float("nan")
