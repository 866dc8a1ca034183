"""The shared base of every feature family: tables encoded for SQL, the runner, assembly of results.

Families (features.compute, features.contact) import from here, never from each other, so adding a
family is a new module plus one entry in compute's FAMILIES and one call in compute_features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import duckdb
import numpy as np
import pandas as pd

from rebuy.contract import EVENT_TYPES, REQUIRED
from rebuy.errors import DataError

if TYPE_CHECKING:
    from features.engine import SqlEngine

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9

Cutoffs = pd.DataFrame | Sequence[pd.Timestamp]
# where a family's SQL runs: a DuckDB connection, another engine (features.engine: Spark), or None (a
# private DuckDB connection). The SQL is DuckDB's dialect, written once for every engine.
Runner: TypeAlias = "duckdb.DuckDBPyConnection | SqlEngine"


# --- inputs -----------------------------------------------------------------------------------------


def _ns(ts: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (int64) of a tz-aware UTC column, whatever its stored unit."""
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise DataError(
            f"timestamps must be timezone-aware UTC, got dtype {ts.dtype}",
            column=str(ts.name),
            rows=ts.head(5).to_frame(),
            hint="read tables with rebuy.ingest.read_canonical, which returns the canonical form",
        )
    return pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8.copy()


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise DataError(
            f"cutoff {t} is naive", hint="pass timezone-aware UTC cutoffs, e.g. pd.Timestamp(..., tz='UTC')"
        )
    return t.tz_convert("UTC")


def pairs_frame(cutoffs: Cutoffs, customer_ids: Sequence[str] | pd.Series | None = None) -> pd.DataFrame:
    """The (customer_id, cutoff) pairs to compute: given as a frame, or every customer x each cutoff."""
    if isinstance(cutoffs, pd.DataFrame):
        missing = {"customer_id", "cutoff"} - set(cutoffs.columns)
        if missing:
            raise DataError(
                f"the pairs frame lacks columns {sorted(missing)}", hint="pass customer_id and cutoff"
            )
        out = cutoffs[["customer_id", "cutoff"]].copy()
        if not isinstance(out["cutoff"].dtype, pd.DatetimeTZDtype):
            raise DataError("cutoff must be timezone-aware UTC", column="cutoff", rows=out.head(5))
        out["cutoff"] = out["cutoff"].dt.tz_convert("UTC").dt.as_unit("ns")
        out["customer_id"] = out["customer_id"].astype(object)
        return out.reset_index(drop=True)
    ts = sorted({_utc(c) for c in cutoffs})
    ids = pd.Index(pd.unique(pd.Series(customer_ids if customer_ids is not None else [], dtype=object)))
    grid = pd.MultiIndex.from_product([ts, ids], names=["cutoff", "customer_id"]).to_frame(index=False)
    grid["cutoff"] = pd.to_datetime(grid["cutoff"], utc=True).dt.as_unit("ns")
    return grid[["customer_id", "cutoff"]].astype({"customer_id": object})


def _require(df: pd.DataFrame, table: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"the {table} table lacks required columns {missing}",
            file=table,
            column=missing[0],
            rows=df.head(5),
            hint="pass canonical tables (rebuy.ingest.read_canonical); see rebuy.contract.REQUIRED",
        )


ET: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}  # event types as small ints in SQL


@dataclass(frozen=True)
class _Inputs:
    """The pairs and tables as all-numeric frames for DuckDB, encoded once per computation.

    Customer ids become positions in the pairs' id index (rows of other customers are dropped),
    event types become ET codes and categories 64-bit hashes (NULL stays NULL): DuckDB then joins
    and filters integers instead of scanning millions of Python strings for every family.
    """

    pairs: pd.DataFrame
    frames: dict[str, pd.DataFrame]
    has_events: bool  # False for an orders-only shop: event features are missing, not zero

    @classmethod
    def build(cls, pairs: pd.DataFrame, **tables: pd.DataFrame | None) -> _Inputs:
        ids = pd.Index(pd.unique(pairs["customer_id"].to_numpy(dtype=object)))
        frames = {
            "pairs": pd.DataFrame(
                {
                    "pid": np.arange(len(pairs), dtype=np.int64),
                    "customer_id": ids.get_indexer(
                        pd.Index(pairs["customer_id"].to_numpy(dtype=object))
                    ).astype(np.int64),
                    "c": _ns(pairs["cutoff"]),
                }
            )
        }
        builders = {"orders": _orders_sql, "events": _events_sql, "customers": _customers_sql}
        for name, df in tables.items():
            if df is not None:
                frames[name] = builders[name](df, ids)
        events = tables.get("events")
        return cls(pairs, frames, events is not None and len(events) > 0)


def _codes(col: pd.Series, ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    codes = ids.get_indexer(pd.Index(col.to_numpy(dtype=object))).astype(np.int64)
    return codes, codes >= 0


def _category(col: pd.Series | None, keep: np.ndarray) -> pd.Series:
    if col is None:
        return pd.Series(pd.array([pd.NA] * int(keep.sum()), dtype="Int64"))
    values = col.to_numpy(dtype=object)[keep]
    missing = pd.isna(values)
    hashed = pd.util.hash_array(np.where(missing, "", values).astype(object)).view(np.int64)
    return pd.Series(pd.arrays.IntegerArray(hashed, missing))


def _events_sql(events: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    _require(events, "events", REQUIRED["events"])
    codes, keep = _codes(events["customer_id"], ids)
    kinds = pd.Categorical(events["event_type"].to_numpy(dtype=object)[keep], categories=EVENT_TYPES).codes
    return pd.DataFrame(
        {
            "customer_id": codes[keep],
            "t": _ns(events["occurred_at"])[keep],
            "event_type": kinds.astype(np.int16),
            "category": _category(events.get("category", None), keep).array,
        }
    )


def _orders_sql(orders: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    _require(orders, "orders", REQUIRED["orders"])
    codes, keep = _codes(orders["customer_id"], ids)
    n = int(keep.sum())
    return pd.DataFrame(
        {
            "customer_id": codes[keep],
            "t": _ns(orders["ordered_at"])[keep],
            "amount": orders["amount"].to_numpy(dtype=np.float64)[keep],
            "category": _category(orders.get("category", None), keep).array,
            "discount": orders["discount"].to_numpy(dtype=np.float64)[keep]
            if "discount" in orders
            else np.zeros(n),
            # ties of simultaneous orders are broken by position (gaps of 0 either way)
            "seq": np.arange(len(orders), dtype=np.int64)[keep],
        }
    )


def _customers_sql(customers: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    _require(customers, "customers", REQUIRED["customers"])
    codes, keep = _codes(customers["customer_id"], ids)
    return pd.DataFrame({"customer_id": codes[keep], "signup": _ns(customers["signup_at"])[keep]})


def _query(sql: str, frames: dict[str, pd.DataFrame], con: Runner | None = None) -> pd.DataFrame:
    """Run `sql` over the given frames in DuckDB: the caller's connection, or a private in-memory one.

    Opening a connection costs ~0.1 s, so callers computing several families (or pushing often) pass
    one in; the frames are registered for this query only. Another engine (Spark) runs the same SQL.
    """
    if con is not None and not isinstance(con, duckdb.DuckDBPyConnection):
        return con.query(sql, frames)
    own = con is None
    con = duckdb.connect(":memory:") if con is None else con
    try:
        for name, df in frames.items():
            con.register(name, df)
        return con.execute(sql).df()
    finally:
        if own:
            con.close()
        else:
            for name in frames:
                con.unregister(name)


def _assemble(pairs: pd.DataFrame, values: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Pairs in their given order with float64 feature columns (NaN where the SQL gave NULL)."""
    values = values.set_index("pid").reindex(np.arange(len(pairs)))
    out = pairs.reset_index(drop=True).copy()
    for col in columns:
        out[col] = values[col].to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _all_missing(pairs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = pairs.reset_index(drop=True).copy()
    for col in columns:
        out[col] = np.nan
    return out
