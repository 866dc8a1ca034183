"""The serving hot path: a FeatureService's online features as a float64 matrix, in well under 1 ms.

Reads the same online store (features.online_store) and definitions as `FeatureStore.get_online_features`,
without its per-request Python overhead (protos, response objects, the on-demand view machinery): one
primary-key query per feature view, each row one float64 vector, and the request-time features from the
same pure function the on-demand feature view calls. The parity test checks it against Feast's online
and historical retrieval. Serving reads all its FeatureServices through `OnlineStoreReader`: one read of
every view (one SQL statement on SQLite, one pipelined round trip on Redis), and each service's matrix a
column gather of one wide matrix. The store is reached only through features.online_store's interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.compute import REQUEST_TIME, request_time_features
from features.online_store import (
    OnlineRows,
    ViewLayout,
    delete_customers,
    entity_key_prefix,
    entity_keys,
    open_rows,
    view_layout,
)
from rebuy.config import Config
from rebuy.errors import RebuyError

if TYPE_CHECKING:
    from feast import FeatureStore

_INSTANTS = sorted({s for s, _ in REQUEST_TIME.values()} | {d for _, d in REQUEST_TIME.values() if d})


Rows = dict[str, list[tuple[bytes, bytes, float | None]]]
_Placed = tuple[
    np.ndarray, np.ndarray, np.ndarray
]  # stored [n, width], found [n, views], event_ts [n, views]


def _query(rows: OnlineRows, layouts: Sequence[ViewLayout], keys: list[bytes]) -> Rows:
    """The stored rows of distinct keys -> table -> [(entity_key, vals, event_ts)]."""
    out: Rows = {v.table: [] for v in layouts}
    for t, key, vals, ts in rows.read(layouts, keys):
        out[layouts[t].table].append((key, vals, ts))
    return out


class OnlineFeatureReader:
    """Reads one FeatureService for a batch of customers; thread-safe, one read-only store connection.

    `feature_names` is the model column order (features.training_set.feature_names). Built by
    `OnlineStoreReader` it shares that reader's store connection and is read through it (`shared`).
    """

    def __init__(
        self,
        cfg: Config,
        service: str,
        *,
        store: FeatureStore | None = None,
        rows: OnlineRows | None = None,
    ) -> None:
        from features.store import feature_store

        store = store if store is not None else feature_store(cfg)
        try:
            fs = store.get_feature_service(service)
        except Exception as exc:  # Feast raises its own not-found errors
            raise RebuyError(
                f"FeatureService {service!r} is not registered: run `rebuy features apply`"
            ) from exc
        self.service = service
        self.shared: OnlineStoreReader | None = None
        projections = {p.name: [f.name for f in p.features] for p in fs.feature_view_projections}
        self.feature_names: list[str] = [n for names in projections.values() for n in names]
        odfvs = {v.name for v in store.list_on_demand_feature_views()}
        request_time = [n for view, names in projections.items() if view in odfvs for n in names]
        # the stored instants (and divisors) the service's request-time features need: only those views
        # are read, so a service never waits on (or is aged by) a view it does not use
        needed = {s for f in request_time for s in REQUEST_TIME.get(f, ()) if s}
        # per stored view: (table, positions in its packed vector, destination columns in `stored`)
        self._stored_names: list[str] = []
        self._views: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._layouts: list[ViewLayout] = []
        for view in store.list_feature_views():
            lay = view_layout(store.config, view)
            names = lay.names
            want = [i for i, n in enumerate(names) if n in projections.get(view.name, ()) or n in needed]
            if not want:
                continue
            dest = np.arange(len(self._stored_names), len(self._stored_names) + len(want))
            self._stored_names.extend(names[i] for i in want)
            self._views.append((lay.table, np.array(want), dest))
            self._layouts.append(lay)
        col = {n: i for i, n in enumerate(self._stored_names)}
        self._out_stored = np.array(
            [j for j, n in enumerate(self.feature_names) if n not in request_time], dtype=int
        )
        self._src_stored = np.array([col[n] for n in self.feature_names if n not in request_time], dtype=int)
        self._out_request = [(j, n) for j, n in enumerate(self.feature_names) if n in request_time]
        self._instant_cols = {n: col.get(n) for n in _INSTANTS}
        self._prefix = entity_key_prefix()
        self._rows = rows if rows is not None else open_rows(store.config, read_only=True)

    @property
    def tables(self) -> list[str]:
        return [table for table, _, _ in self._views]

    def close(self) -> None:
        self._rows.close()

    def read(
        self, customer_ids: Sequence[str], now: pd.Timestamp | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features [n, n_features] float64 in `feature_names` order, NaN where missing;
        found_mask [n] bool; feature_age_seconds [n] = now - the oldest snapshot read, NaN if not found).

        `now` is the request time (a UTC timestamp or epoch seconds) for the request-time features.
        A customer id given twice gets the same row twice.
        """
        keys, inverse = _distinct_keys(customer_ids, self._prefix)
        rows = _query(self._rows, self._layouts, keys)
        return self.assemble(keys, inverse, rows, _epoch_seconds(now))

    def assemble(
        self, keys: list[bytes], inverse: np.ndarray | None, rows: Rows, now_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This service's matrix from query results (per distinct key), expanded back to request order."""
        n = len(keys)
        stored = np.full((n, len(self._stored_names)), np.nan)
        oldest = np.full(n, np.inf)
        found = np.zeros(n, dtype=bool)
        row_of = {k: i for i, k in enumerate(keys)}
        for table, pos, dest in self._views:
            got = rows[table]
            if not got:
                continue
            idx = np.fromiter((row_of[r[0]] for r in got), dtype=np.int64, count=len(got))
            mat = np.frombuffer(b"".join(r[1] for r in got), dtype="<f8").reshape(len(got), -1)
            stored[np.ix_(idx, dest)] = mat[:, pos]
            found[idx] = True
            ts = np.array([np.inf if r[2] is None else r[2] for r in got], dtype=np.float64)
            np.minimum.at(oldest, idx, ts)
        out = np.full((n, len(self.feature_names)), np.nan)
        out[:, self._out_stored] = stored[:, self._src_stored]
        if self._out_request:
            inst = {
                name: stored[:, c] if c is not None else np.full(n, np.nan)
                for name, c in self._instant_cols.items()
            }
            rt = request_time_features(inst, np.full(n, now_s))
            for j, name in self._out_request:
                out[:, j] = rt[name]
        age = np.where(found & np.isfinite(oldest), now_s - oldest, np.nan)
        if inverse is not None:
            return out[inverse], found[inverse], age[inverse]
        return out, found, age


class OnlineStoreReader:
    """Several FeatureServices over one online store, read for all of them at once (serving's hot path).

    The services overlap (churn, repurchase, value and offer all read the order-history view, ...), so
    reading them one by one repeats most of the work. Here a request is one SQL statement (a UNION ALL
    of the feature views' primary-key look-ups), each row's packed float64 vector is copied once into
    one wide matrix of every view's full layout, the request-time features are computed once from it,
    and each service's matrix is one column gather. `read_services` returns exactly what each service's
    `OnlineFeatureReader.read` returns (tests/serving/test_online_reader.py); `read_all` also combines
    the services' found flags and ages the way the scorer does, saving the per-service arrays.
    """

    # up to this many distinct keys, rows are copied one by one (fewer calls); above, one block per view
    row_loop_max = 16

    def __init__(self, cfg: Config, services: Sequence[str]) -> None:
        from features.store import feature_store

        store = feature_store(cfg)
        self._rows = open_rows(store.config, read_only=True)
        self._prefix = entity_key_prefix()
        self.readers: dict[str, OnlineFeatureReader] = {}
        try:
            for svc in services:
                r = OnlineFeatureReader(cfg, svc, store=store, rows=self._rows)
                r.shared = self
                self.readers[svc] = r
            layouts = {
                lay.table: lay for lay in (view_layout(store.config, v) for v in store.list_feature_views())
            }
        except Exception:
            self._rows.close()
            raise
        self._plan(layouts)

    def _plan(self, layouts: dict[str, ViewLayout]) -> None:
        """Where every service's columns sit in the wide matrix: [each used view's full layout | request-time]."""
        widths = {t: lay.width for t, lay in layouts.items()}
        used = {t for r in self.readers.values() for t in r.tables}
        self._tables = [t for t in widths if t in used]  # the store's view order
        self._layouts = [layouts[t] for t in self._tables]
        tix = {t: i for i, t in enumerate(self._tables)}
        offsets = np.cumsum([0] + [widths[t] for t in self._tables])
        self._width = int(offsets[-1])
        self._nan_row = np.full(self._width, np.nan, dtype="<f8").tobytes()
        self._bytes = [(8 * int(offsets[i]), 8 * widths[t]) for i, t in enumerate(self._tables)]
        # request-time features: one block of REQUEST_TIME columns per distinct set of instant columns
        self._rt_groups: list[dict[str, int | None]] = []
        self._svc_cols: dict[str, np.ndarray] = {}
        self._svc_tables: dict[str, np.ndarray] = {}
        rt_names = list(REQUEST_TIME)
        for svc, r in self.readers.items():
            wide = np.empty(len(r._stored_names), dtype=np.int64)  # the reader's stored column -> wide column
            for table, pos, dest in r._views:
                wide[dest] = offsets[tix[table]] + pos
            cols = np.empty(len(r.feature_names), dtype=np.int64)
            cols[r._out_stored] = wide[r._src_stored]
            if r._out_request:
                inst = {n: None if c is None else int(wide[c]) for n, c in r._instant_cols.items()}
                if inst not in self._rt_groups:
                    self._rt_groups.append(inst)
                base = self._width + len(rt_names) * self._rt_groups.index(inst)
                for j, name in r._out_request:
                    cols[j] = base + rt_names.index(name)
            self._svc_cols[svc] = cols
            self._svc_tables[svc] = np.array([tix[t] for t in r.tables], dtype=np.int64)

    def reader(self, service: str) -> OnlineFeatureReader:
        return self.readers[service]

    def close(self) -> None:
        self._rows.close()

    def _wide(self, customer_ids: Sequence[str], now_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wide matrix [n, views + request-time], found [n, views], event_ts [n, views] with inf = none),
        rows in request order."""
        keys, inverse = _distinct_keys(customer_ids, self._prefix)
        n = len(keys)
        rows = self._rows.read(self._layouts, keys)
        if n <= self.row_loop_max:
            stored, hit, stamps = self._place_rows(rows, keys)
        else:
            stored, hit, stamps = self._place_tables(rows, keys)
        if self._rt_groups:
            wide = np.empty((n, self._width + len(REQUEST_TIME) * len(self._rt_groups)))
            wide[:, : self._width] = stored
            at_now = np.full(n, now_s)
            for g, inst in enumerate(self._rt_groups):
                rt = request_time_features(
                    {k: stored[:, c] if c is not None else np.full(n, np.nan) for k, c in inst.items()},
                    at_now,
                )
                base = self._width + len(REQUEST_TIME) * g
                for k, name in enumerate(REQUEST_TIME):
                    wide[:, base + k] = rt[name]
        else:
            wide = stored
        if inverse is not None:
            return wide[inverse], hit[inverse], stamps[inverse]
        return wide, hit, stamps

    def _bad_row(self, t: int, got: int) -> RebuyError:
        return RebuyError(
            f"online store table {self._tables[t]!r}: a row holds {got} values where the feature view has "
            f"{self._bytes[t][1] // 8}; run `rebuy features apply` and `rebuy features materialize`"
        )

    def _place_rows(self, rows: list[tuple[int, bytes, bytes, float | None]], keys: list[bytes]) -> _Placed:
        """Few keys (the service's requests): each row's bytes copied into place, no per-view numpy calls."""
        n, n_tables, row_bytes = len(keys), len(self._tables), len(self._nan_row)
        buf = bytearray(self._nan_row * n)
        found = bytearray(n * n_tables)
        ts = [np.inf] * (n * n_tables)
        row_of = {k: i for i, k in enumerate(keys)} if n > 1 else None
        for t, key, vals, stamp in rows:
            i = row_of[key] if row_of is not None else 0
            start, size = self._bytes[t]
            if len(vals) != size:
                raise self._bad_row(t, len(vals) // 8)
            at = i * row_bytes + start
            buf[at : at + size] = vals
            found[i * n_tables + t] = 1
            if stamp is not None:
                ts[i * n_tables + t] = stamp
        stored = np.frombuffer(buf, dtype="<f8").reshape(n, self._width)
        hit = np.frombuffer(found, dtype=np.bool_).reshape(n, n_tables)
        return stored, hit, np.array(ts, dtype=np.float64).reshape(n, n_tables)

    def _place_tables(self, rows: list[tuple[int, bytes, bytes, float | None]], keys: list[bytes]) -> _Placed:
        """Many keys (`rebuy score`'s chunks): one block copy per view, as numpy arrays."""
        n, n_tables = len(keys), len(self._tables)
        stored = np.full((n, self._width), np.nan)
        hit = np.zeros((n, n_tables), dtype=bool)
        stamps = np.full((n, n_tables), np.inf)
        per_table: list[list[tuple[int, bytes, bytes, float | None]]] = [[] for _ in range(n_tables)]
        for r in rows:
            per_table[r[0]].append(r)
        row_of = {k: i for i, k in enumerate(keys)}
        for t, got in enumerate(per_table):
            if not got:
                continue
            start, size = self._bytes[t]
            blob = b"".join(r[2] for r in got)
            if len(blob) != size * len(got):
                raise self._bad_row(t, next(len(r[2]) // 8 for r in got if len(r[2]) != size))
            idx = np.fromiter((row_of[r[1]] for r in got), dtype=np.int64, count=len(got))
            stored[idx, start // 8 : (start + size) // 8] = np.frombuffer(blob, dtype="<f8").reshape(
                len(got), -1
            )
            hit[idx, t] = True
            stamps[idx, t] = [np.inf if r[3] is None else r[3] for r in got]
        return stored, hit, stamps

    @staticmethod
    def _found_age(
        hit: np.ndarray, stamps: np.ndarray, tables: np.ndarray, now_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Found in any of `tables`; age = now - the oldest snapshot among them (NaN if none is known)."""
        found = np.asarray(hit[:, tables].any(axis=1), dtype=bool)
        oldest = stamps[:, tables].min(axis=1)
        return found, np.where(found & np.isfinite(oldest), now_s - oldest, np.nan)

    def read_services(
        self, services: Sequence[str], customer_ids: Sequence[str], now: pd.Timestamp | float
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """service -> (X, found, age) as `OnlineFeatureReader.read` gives, from one statement for all views."""
        now_s = _epoch_seconds(now)
        wide, hit, stamps = self._wide(customer_ids, now_s)
        out = {}
        for svc in services:
            found, age = self._found_age(hit, stamps, self._svc_tables[svc], now_s)
            out[svc] = (wide[:, self._svc_cols[svc]], found, age)
        return out

    def read_all(
        self, services: Sequence[str], customer_ids: Sequence[str], now: pd.Timestamp | float
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(service -> X, cold [n], age [n]) with cold = found in no service and age = the oldest service's
        age: what `serving.scorer.Scorer.read` makes of `read_services`, without the per-service arrays."""
        now_s = _epoch_seconds(now)
        wide, hit, stamps = self._wide(customer_ids, now_s)
        tables = np.unique(np.concatenate([self._svc_tables[s] for s in services]))
        found, age = self._found_age(hit, stamps, tables, now_s)
        return {svc: wide[:, self._svc_cols[svc]] for svc in services}, ~found, age


def _epoch_seconds(now: pd.Timestamp | float) -> float:
    return float(now) if isinstance(now, (int, float)) else pd.Timestamp(now).timestamp()


def _distinct_keys(customer_ids: Sequence[str], prefix: bytes) -> tuple[list[bytes], np.ndarray | None]:
    """Entity keys without repeats, and where each requested id sits among them (None: no repeats)."""
    keys = entity_keys(customer_ids, prefix)
    if len(set(keys)) == len(keys):
        return keys, None
    first: dict[bytes, int] = {}
    inverse = np.fromiter((first.setdefault(k, len(first)) for k in keys), dtype=np.int64, count=len(keys))
    return list(first), inverse


def forget_customers(cfg: Config, customer_ids: Sequence[str]) -> int:
    """Delete customers from the online store and the offline snapshots (a right-to-erasure request).

    Returns the number of online rows removed. Feature snapshots are derived data: recomputing them
    from the (already pseudonymised) canonical tables would not bring the customers back.
    """
    from features.store import feature_store, forget_offline

    removed = delete_customers(feature_store(cfg), [str(c) for c in customer_ids])
    forget_offline(cfg, customer_ids)
    return removed
