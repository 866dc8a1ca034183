"""The serving hot path: a FeatureService's online features as a float64 matrix, in ~1 ms per customer.

Reads the same SQLite online store and definitions as `FeatureStore.get_online_features`, without its
per-request Python overhead (protos, response objects, the on-demand view machinery): one indexed
query per feature view, values decoded straight from their stored bytes, request-time features from
the same pure function the on-demand feature view calls. The parity test checks it against Feast's
online and historical retrieval.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.compute import REQUEST_TIME, request_time_features
from features.online_store import decode_value, entity_key_prefix, entity_keys
from rebuy.config import Config
from rebuy.errors import RebuyError


class OnlineFeatureReader:
    """Reads one FeatureService for a batch of customers; thread-safe, one SQLite connection."""

    def __init__(self, cfg: Config, service: str) -> None:
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        from features.store import feature_store

        store = feature_store(cfg)
        try:
            fs = store.get_feature_service(service)
        except Exception as exc:  # Feast raises its own not-found errors
            raise RebuyError(f"FeatureService {service!r} is not registered: run `rebuy features apply`") from exc
        self.service = service
        self.feature_names: list[str] = []
        odfv_names: set[str] = set()
        for proj in fs.feature_view_projections:
            self.feature_names.extend(f.name for f in proj.features)
        for odfv in store.list_on_demand_feature_views():
            if any(p.name == odfv.name for p in fs.feature_view_projections):
                odfv_names.update(f.name for f in odfv.features)
        needed_instants = {s for n, (s, d) in REQUEST_TIME.items() if n in odfv_names} | {
            d for n, (s, d) in REQUEST_TIME.items() if n in odfv_names and d}
        # stored columns: the service's features of each view + the instants the request-time ones need
        self._stored: list[str] = []
        self._tables: list[tuple[str, dict[str, int]]] = []
        cfg_feast = store.config
        for view in store.list_feature_views():
            wanted = [f.name for f in view.features if f.name in self.feature_names or f.name in needed_instants]
            if not wanted:
                continue
            index = {}
            for name in wanted:
                index[name] = len(self._stored)
                self._stored.append(name)
            table = compute_table_id(cfg_feast.project, view, cfg_feast.registry.enable_online_feature_view_versioning)
            self._tables.append((table, index))
        self._request_time = [n for n in self.feature_names if n in odfv_names]
        col = {name: i for i, name in enumerate(self._stored)}
        self._out_from_stored = [(j, col[n]) for j, n in enumerate(self.feature_names) if n in col]
        self._out_request = [(j, n) for j, n in enumerate(self.feature_names) if n in odfv_names]
        self._instants = sorted(needed_instants)
        self._prefix = entity_key_prefix()
        path = SqliteOnlineStore._get_db_path(cfg_feast)
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def read(
        self, customer_ids: Sequence[str], now: pd.Timestamp | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features [n, n_features] float64 in `feature_names` order, NaN where missing;
        found_mask [n] bool; feature_age_seconds [n] float64 = now - oldest snapshot read, NaN if not found).
        """
        now_s = float(now) if isinstance(now, (int, float)) else pd.Timestamp(now).timestamp()
        ids = [str(c) for c in customer_ids]
        n = len(ids)
        keys = entity_keys(ids, self._prefix)
        row_of = {k: i for i, k in enumerate(keys)}
        stored = np.full((n, len(self._stored)), np.nan)
        oldest = np.full(n, np.inf)
        found = np.zeros(n, dtype=bool)
        marks = ",".join("?" * n)
        with self._lock:
            results = [
                (index, self._conn.execute(
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{table}" WHERE entity_key IN ({marks})',
                    keys).fetchall())
                for table, index in self._tables
            ]
        for index, rows in results:
            for key, fname, raw, ts in rows:
                j = index.get(fname)
                if j is None:
                    continue
                i = row_of[key]
                stored[i, j] = decode_value(raw)
                found[i] = True
                if ts is not None and ts < oldest[i]:
                    oldest[i] = ts
        out = np.full((n, len(self.feature_names)), np.nan)
        for j, s in self._out_from_stored:
            out[:, j] = stored[:, s]
        if self._out_request:
            col = {name: i for i, name in enumerate(self._stored)}
            every = {s for s, _ in REQUEST_TIME.values()} | {d for _, d in REQUEST_TIME.values() if d}
            inst = {name: stored[:, col[name]] if name in col else np.full(n, np.nan) for name in every}
            rt = request_time_features(inst, np.full(n, now_s))
            for j, name in self._out_request:
                out[:, j] = rt[name]
        age = np.where(found & np.isfinite(oldest), now_s - oldest, np.nan)
        return out, found, age
