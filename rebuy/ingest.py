"""Canonical tables on disk, and the import that produces them from a shop's own exports.

Every stage reads `<data_dir>/canonical/<table>.parquet` through `read_canonical`; only
`write_canonical` writes there, and it swaps the whole directory in at once, so a reader never
sees half of an import.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pandas as pd

from rebuy.contract import SCHEMAS, TABLES, empty
from rebuy.errors import DataError

CANONICAL = "canonical"

# Values for optional contract columns a source does not have. Stated here so the import summary
# can list exactly which columns were filled in rather than read.
OPTIONAL_DEFAULTS: dict[str, dict[str, object]] = {
    "customers": {
        "birthday": pd.NaT, "timezone": None, "region": None,
        "consent_email": False, "consent_sms": False, "consent_push": False,
    },
    "orders": {"category": None, "discount": 0.0, "items": 1, "returned_amount": 0.0},
    "events": {"category": None},
    "consent_updates": {"source": None},
}


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Contract columns only, in contract order and dtypes; missing optional columns get their defaults.

    Pure: used by the import, by `read_canonical` and by anyone holding a table built in memory.
    """
    template = empty(table)
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in template.columns:
        if col in df.columns:
            values = df[col].reset_index(drop=True)
        else:
            default = OPTIONAL_DEFAULTS[table].get(col)
            values = pd.Series([default] * len(df), dtype=object)
        dtype = template[col].dtype
        if pd.api.types.is_object_dtype(dtype):
            values = values.astype(object).where(values.notna(), None)
        elif str(dtype) == "datetime64[ns]":
            values = pd.to_datetime(values, errors="coerce")
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_localize(None)
            values = values.astype("datetime64[ns]")
        else:
            values = values.astype(dtype)
        out[col] = values
    return out


def derive_customers(orders: pd.DataFrame) -> pd.DataFrame:
    """Customers of an orders-only shop: first order = signup; no consent is assumed (all False)."""
    first = (
        orders.groupby("customer_id", sort=True)["ordered_at"].min().rename("signup_at").reset_index()
    )
    return conform("customers", first)


def write_canonical(tables: dict[str, pd.DataFrame], data_dir: Path) -> Path:
    """Validate and write canonical Parquet into `<data_dir>/canonical/`, all tables or none.

    The tables go to a temporary directory beside the target and are swapped in with renames, so a
    crash leaves either the old canonical directory or the new one, never a mix. Tables not given
    are written empty, so a stale `events.parquet` from an earlier import cannot survive.
    """
    if "orders" not in tables:
        raise DataError("no orders table to write", hint="every shop needs orders; run `rebuy import`")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DataError(f"unknown canonical tables {unknown}; known: {list(TABLES)}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    full = dict(tables)
    if "customers" not in full:
        full["customers"] = derive_customers(conform("orders", full["orders"]))
    ready = {t: _validated(t, conform(t, full.get(t, empty(t)))) for t in TABLES}
    target = data_dir / CANONICAL
    tmp = data_dir / f".{CANONICAL}.tmp-{uuid.uuid4().hex[:8]}"
    old = data_dir / f".{CANONICAL}.old-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, df in ready.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_canonical(data_dir: Path) -> dict[str, pd.DataFrame]:
    """All four canonical tables; absent optional ones (events, consent updates) come back empty.

    A missing customers table is derived from orders (first order = signup), so a data directory
    written by hand with orders only still works. No orders is an error: nothing can be learned.
    """
    folder = Path(data_dir) / CANONICAL
    orders_path = folder / "orders.parquet"
    if not orders_path.is_file():
        raise DataError(
            "no canonical orders table",
            file=str(orders_path),
            hint="run `rebuy import` (or `rebuy simulate`) with this data directory first",
        )
    out: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        path = folder / f"{table}.parquet"
        out[table] = conform(table, pd.read_parquet(path)) if path.is_file() else empty(table)
    if not (folder / "customers.parquet").is_file():
        out["customers"] = derive_customers(out["orders"])
    return out


def _validated(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Check a conformed table against its pandera schema; a failure is a DataError, not a traceback."""
    import pandera.errors as pae

    try:
        return SCHEMAS[table].validate(df, lazy=True)
    except pae.SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0]
        rows = [int(i) + 1 for i in cases["index"].dropna().head(5)]
        raise DataError(
            f"{table} breaks the contract: {first['check']} ({len(cases)} failing values)",
            file=f"{table}.parquet",
            column=str(first["column"]),
            row_numbers=rows or None,
            hint="fix the table before writing it; see rebuy.contract for the canonical form",
        ) from exc
