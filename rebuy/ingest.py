"""Canonical tables on disk, and the import that produces them from a shop's own exports.

Every stage reads `<data_dir>/canonical/<table>.parquet` through `read_canonical`; only
`write_canonical` writes there, and it swaps the whole directory in at once, so a reader never
sees half of an import.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from rich.console import Console, Group
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rebuy.config import Config, DialectConfig, ImportConfig, TableSource
from rebuy.contract import (
    ARROW_STR,
    EVENT_TYPES,
    MESSAGE_CHANNELS,
    MESSAGE_SOURCES,
    OPTIONAL,
    REQUIRED,
    SCHEMAS,
    TABLES,
    TIMESTAMPS,
    UTC_TS,
    empty,
)
from rebuy.errors import DataError, combine
from rebuy.files import swap_in_dir, write_parquet

CANONICAL = "canonical"
# rebuy's own sends, appended by delivery beside the canonical folder (an import swaps that folder whole,
# and must not erase what rebuy sent); `read_canonical` unions them into `messages`
SENT_MESSAGES = "sent_messages"

# Values for optional contract columns a source does not have. Stated here so the import summary
# can list exactly which columns were filled in rather than read.
OPTIONAL_DEFAULTS: dict[str, dict[str, object]] = {
    "customers": {
        "birthday": pd.NaT,
        "timezone": None,
        "region": None,
        "consent_email": False,
        "consent_sms": False,
        "consent_push": False,
    },
    "orders": {"category": None, "discount": 0.0, "items": 1, "returned_amount": 0.0},
    "events": {"category": None},
    "consent_updates": {"source": None},
    "messages": {"campaign": None, "offer": None},
}


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Contract columns only, in contract order and dtypes; missing optional columns get their defaults.

    Pure: used by the import, by `read_canonical` and by anyone holding a table built in memory.
    The index is kept, so validation failures still point at the source rows.
    """
    template = empty(table)
    out = pd.DataFrame(index=df.index)
    for col in template.columns:
        if col in df.columns:
            values = df[col]
        else:
            default = OPTIONAL_DEFAULTS[table].get(col)
            values = pd.Series([default] * len(df), index=df.index, dtype=object)
        dtype = template[col].dtype
        if isinstance(dtype, pd.CategoricalDtype):  # categories from the data (an empty frame has none)
            values = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
        elif pd.api.types.is_object_dtype(dtype):
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
    first = orders.groupby("customer_id", sort=True)["ordered_at"].min().rename("signup_at").reset_index()
    return conform("customers", first)


def write_canonical(tables: dict[str, pd.DataFrame], data_dir: Path, *, validate: bool = True) -> Path:
    """Validate and write canonical Parquet into `<data_dir>/canonical/`, all tables or none.

    `validate=False` is for callers that have just run the same schemas (the import), since the
    pandera text checks are the slowest part of writing a large shop.

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
    ready = {t: conform(t, full.get(t, empty(t))) for t in TABLES}
    if validate:
        ready = {t: _validated(t, df) for t, df in ready.items()}

    def write(tmp: Path) -> None:
        for name, df in ready.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)

    return swap_in_dir(data_dir / CANONICAL, write)


def read_canonical(data_dir: Path) -> dict[str, pd.DataFrame]:
    """All canonical tables; absent optional ones (events, consent updates, messages) come back empty.

    `messages` is the canonical table united with rebuy's own sends (`append_sent_messages`), each
    message_id once: an export of the shop's e-mail tool that also lists rebuy's sends does not count
    them twice.

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
        out[table] = conform(table, read_table_file(table, path)) if path.is_file() else empty(table)
    if not (folder / "customers.parquet").is_file():
        out["customers"] = derive_customers(out["orders"])
    out["messages"] = union_messages(out["messages"], read_sent_messages(data_dir))
    return out


# --- messages: the union of imported / simulated sends and rebuy's own ------------------------------


def concat_messages(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Messages frames stacked with their categoricals kept (plain `pd.concat` turns categoricals with
    different categories into object columns: millions of Python strings)."""
    frames = [conform("messages", f) for f in frames if f is not None and len(f)]
    if not frames:
        return empty("messages")
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    cols: dict[str, object] = {}
    for col, dtype in empty("messages").dtypes.items():
        parts = [f[str(col)] for f in frames]
        if isinstance(dtype, pd.CategoricalDtype):
            cols[str(col)] = pd.api.types.union_categoricals([p.array for p in parts])
        else:
            cols[str(col)] = pd.concat(parts, ignore_index=True).array
    return pd.DataFrame(cols)


def union_messages(*frames: pd.DataFrame) -> pd.DataFrame:
    """Every send once: the frames stacked, the first row of each message_id kept, in time order."""
    out = concat_messages(list(frames))
    if not len(out):
        return out
    out = out.loc[~out["message_id"].duplicated(keep="first")]
    return out.sort_values(["sent_at", "message_id"], kind="stable").reset_index(drop=True)


def append_sent_messages(data_dir: Path, messages: pd.DataFrame) -> Path | None:
    """Record rebuy's delivered sends (`source` "rebuy", message_id = decision_id) in a new part file.

    Written to a temporary name then renamed, so a reader sees the whole part or none of it. Delivery
    is at-least-once, so a part may repeat ids already recorded: readers keep each message_id once.
    """
    if not len(messages):
        return None
    df = conform("messages", messages).reset_index(drop=True)
    folder = Path(data_dir) / SENT_MESSAGES
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    return write_parquet(df, folder / name)


def read_sent_messages(data_dir: Path) -> pd.DataFrame:
    """rebuy's recorded sends (all part files), in canonical form; empty when it has sent nothing."""
    folder = Path(data_dir) / SENT_MESSAGES
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    return concat_messages([read_table_file("messages", p) for p in parts])


def read_table_file(table: str, path: Path) -> pd.DataFrame:
    """One canonical Parquet file; `messages` text straight into Arrow strings (pandas would build one
    Python string per id: gigabytes for a large shop's newsletter history)."""
    if table != "messages":
        return pd.read_parquet(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    strings = {pa.string(): ARROW_STR, pa.large_string(): ARROW_STR}
    return pq.read_table(path).to_pandas(types_mapper=strings.get)


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


# --- import: the shop's exports -> canonical tables ------------------------------------------------

ID_COLUMNS = frozenset({"customer_id", "order_id", "message_id"})
TEXT_COLUMNS = frozenset(
    {"category", "timezone", "region", "event_type", "channel", "source", "campaign", "offer"}
)
FLOAT_COLUMNS = frozenset({"amount", "discount", "returned_amount"})
INT_COLUMNS = frozenset({"items"})
BOOL_COLUMNS = frozenset({"consent_email", "consent_sms", "consent_push", "consent"})
DATE_COLUMNS = frozenset({"birthday"})
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT)\s*$"


@dataclass(frozen=True)
class Sources:
    """Which files to import. None: the table is absent (customers are then derived from orders)."""

    customers: Path | None = None
    orders: Path | None = None
    events: Path | None = None
    consent_updates: Path | None = None
    messages: Path | None = None
    # None: by file suffix (.parquet/.pq -> Parquet, anything else CSV)
    format: Literal["csv", "parquet"] | None = None

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Path | str | None) -> Sources:
        """Paths from `[import.<table>] path`, each replaced by a flag when one is given."""
        fmt = overrides.pop("format", None)
        paths: dict[str, Path | None] = {}
        for table in TABLES:
            flag = overrides.get(table)
            configured = getattr(cfg.import_, table).path
            paths[table] = Path(flag) if flag is not None else configured
        return cls(**paths, format=fmt)  # type: ignore[arg-type]

    def path(self, table: str) -> Path | None:
        value: Path | None = getattr(self, table)
        return value

    def format_of(self, path: Path) -> str:
        if self.format is not None:
            return self.format
        return "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"


@dataclass(frozen=True)
class ImportResult:
    """What an import found (and, for `import_inputs`, wrote). Nothing is half-done."""

    tables: dict[str, pd.DataFrame]
    # table -> the file it came from, "derived from orders" or "absent"
    origin: dict[str, str]
    # table -> contract columns not read from the file (filled with defaults or computed)
    derived: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    written_to: Path | None = None

    def summary(self) -> pd.DataFrame:
        """One row per table: origin, rows, customers, date range, derived columns."""
        rows = []
        for table in TABLES:
            df = self.tables[table]
            ts = df[TIMESTAMPS[table][0]]
            rows.append(
                {
                    "table": table,
                    "from": self.origin[table],
                    "rows": len(df),
                    "customers": int(df["customer_id"].nunique()),
                    "first": ts.min() if len(df) else pd.NaT,
                    "last": ts.max() if len(df) else pd.NaT,
                    "derived columns": ", ".join(self.derived.get(table, [])),
                }
            )
        return pd.DataFrame(rows)


def validate_inputs(
    cfg: Config, sources: Sources, as_of: pd.Timestamp, *, progress: bool = False
) -> ImportResult:
    """Read, convert and check every source against the contract; write nothing.

    Raises one DataError for everything found in a pass (the first in full, the others listed).
    `progress` shows a rich progress display on stderr (the CLI turns it on; large exports take a while).
    """
    with _Steps(progress) as steps:
        return _validate(cfg, sources, as_of, steps)


def _validate(cfg: Config, sources: Sources, as_of: pd.Timestamp, steps: _Steps) -> ImportResult:
    as_of = _utc(as_of)
    icfg = cfg.import_
    if sources.orders is None:
        raise DataError(
            "no orders file given",
            hint="pass --orders FILE or set [import.orders] path in rebuy.toml; orders are the one required table",
        )
    parsed: dict[str, _Parsed] = {}
    errors: list[DataError] = []
    for table in TABLES:
        path = sources.path(table)
        if path is None:
            continue
        steps.step(f"reading {table} ({Path(path).name})")
        try:
            parsed[table] = _read_table(table, Path(path), sources.format_of(Path(path)), icfg)
        except _Problems as exc:
            errors.extend(exc.errors)
    if errors:
        raise combine(errors)

    notes: list[str] = [n for p in parsed.values() for n in p.notes]
    orders = parsed["orders"]
    errors += _returns(orders, icfg.returns, notes)
    if "order_id" not in orders.present:
        orders.frame["order_id"] = derive_order_ids(orders.frame)
    if "events" in parsed:
        _map_event_types(parsed["events"], icfg.event_type_map)

    tables: dict[str, pd.DataFrame] = {t: conform(t, p.frame) for t, p in parsed.items()}
    for table, p in parsed.items():
        steps.step(f"checking {table} against the contract")
        errors += _schema_problems(table, tables[table], p, icfg)
    errors += _after_as_of(tables, parsed, as_of, icfg)
    if "customers" in parsed:
        errors += _cross_customer_checks(tables, parsed, icfg)
    if errors:
        raise combine(errors)

    origin = {t: str(parsed[t].path) if t in parsed else "absent" for t in TABLES}
    derived = {t: p.derived for t, p in parsed.items()}
    if "customers" not in parsed:
        tables["customers"] = derive_customers(tables["orders"])
        origin["customers"] = "derived from orders"
        derived["customers"] = list(empty("customers").columns[1:])
        notes.append(
            "customers derived from orders: signup_at = first order; consents default to False, "
            "so rebuy messages nobody until consent is imported"
        )
    elif {"consent_email", "consent_sms", "consent_push"} - set(parsed["customers"].present):
        notes.append(
            "customers file has no consent columns for some channels: those consents default to False"
        )
    for table in TABLES:
        if table not in tables:
            tables[table] = empty(table)
            derived[table] = []
    events = tables["events"]
    strangers = ~events["customer_id"].isin(tables["customers"]["customer_id"])
    if strangers.any():
        notes.append(
            f"{int(strangers.sum())} event(s) of {events.loc[strangers, 'customer_id'].nunique()} customer(s) "
            "not in customers (visitors without an order or account): kept as they are"
        )
    if origin["events"] == "absent":
        notes.append("no events: orders-only shop; event features will be missing, not guessed")
    messages = tables["messages"]
    strangers = ~messages["customer_id"].isin(tables["customers"]["customer_id"])
    if strangers.any():
        notes.append(
            f"{int(strangers.sum())} message(s) to {messages.loc[strangers, 'customer_id'].nunique()} "
            "customer(s) not in customers (subscribers without an order or account): kept as they are"
        )
    out = {t: conform(t, tables[t]).reset_index(drop=True) for t in TABLES}
    return ImportResult(tables=out, origin=origin, derived=derived, notes=notes)


def import_inputs(
    cfg: Config, sources: Sources, as_of: pd.Timestamp, *, progress: bool = False
) -> ImportResult:
    """`validate_inputs`, then write the canonical tables atomically into `<data_dir>/canonical/`."""
    with _Steps(progress) as steps:
        result = _validate(cfg, sources, as_of, steps)
        steps.step(f"writing canonical Parquet to {cfg.paths.canonical}")
        # _validate has run the contract's schemas on these very tables
        target = write_canonical(result.tables, cfg.paths.data_dir, validate=False)
    return replace(result, written_to=target)


class _Steps:
    """A rich progress display of the import's steps on stderr, or nothing when turned off."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if enabled:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> _Steps:
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def step(self, description: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=description)


def summary_table(result: ImportResult) -> Group:
    """The import summary for the terminal: a table (rows, dates, customers, derived columns) and notes."""
    title = (
        f"canonical tables written to {result.written_to}"
        if result.written_to
        else "validated (nothing written)"
    )
    table = Table(title=title)
    for col in ("table", "from", "rows", "customers", "first", "last", "derived columns"):
        table.add_column(col, justify="right" if col in {"rows", "customers"} else "left")
    for rec in result.summary().to_dict("records"):
        table.add_row(*[_cell(v) for v in rec.values()])
    return Group(table, *(Text(f"note: {n}", style="yellow") for n in result.notes))


def _cell(v: object) -> str:
    if v is None or v is pd.NaT:
        return ""
    return f"{v:%Y-%m-%d %H:%M}" if isinstance(v, pd.Timestamp) else str(v)


def derive_order_ids(orders: pd.DataFrame) -> pd.Series:
    """Deterministic ids for orders without one: a hash of customer, UTC time, amount and occurrence.

    The occurrence number (how many identical (customer, time, amount) rows came before in the file)
    keeps two genuinely identical orders apart, and re-importing the same file gives the same ids.
    """
    ts = orders["ordered_at"].astype("int64").astype(str)
    amount = orders["amount"].map(repr)
    key = pd.DataFrame({"c": orders["customer_id"].astype(str), "t": ts, "a": amount})
    occurrence = key.groupby(["c", "t", "a"], sort=False).cumcount().astype(str)
    joined = key["c"] + "\x1f" + key["t"] + "\x1f" + key["a"] + "\x1f" + occurrence
    return joined.map(lambda s: "o-" + hashlib.blake2b(s.encode(), digest_size=8).hexdigest())


# --- reading one file ------------------------------------------------------------------------------


@dataclass
class _Parsed:
    table: str
    path: Path
    raw: pd.DataFrame  # as read, the user's column names: shown in error messages
    frame: pd.DataFrame  # canonical names and types, same index as raw
    present: list[str]  # canonical columns the file had
    names: dict[str, str]  # canonical -> the user's column name
    derived: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rows(self, index: pd.Index | list, limit: int) -> tuple[list[int], pd.DataFrame]:
        idx = list(dict.fromkeys(index))[:limit]
        shown = self.raw.loc[idx].copy()
        shown.index = pd.Index([i + 1 for i in idx], name="row")
        return [int(i) + 1 for i in idx], shown

    def col(self, canonical: str) -> str:
        user = self.names.get(canonical, canonical)
        return user if user == canonical else f"{user} (-> {canonical})"

    def error(
        self, problem: str, column: str | None, index: pd.Index | list, hint: str, limit: int
    ) -> DataError:
        numbers, shown = self.rows(index, limit)
        return DataError(
            problem,
            file=str(self.path),
            column=self.col(column) if column else None,
            rows=shown,
            row_numbers=numbers,
            hint=hint,
        )


class _Problems(Exception):
    def __init__(self, errors: list[DataError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.headline() for e in errors))


def read_raw(path: Path, fmt: str, dialect: DialectConfig, column_order: list[str] | None) -> pd.DataFrame:
    """A file as it is: CSV cells all as text (so "007" stays "007"), Parquet as stored.

    Raises DataError for a missing, empty, undecodable or header-only file. Shared with the
    campaign import, which reads the same kind of exports.
    """
    if not path.is_file():
        raise DataError(
            "file not found", file=str(path), hint="check the path (flag or [import.<table>] path)"
        )
    if path.stat().st_size == 0:
        raise DataError("the file is empty (0 bytes)", file=str(path), hint="export the table again")
    if fmt != "parquet" and _magic(path) == b"PAR1":
        raise DataError(
            "this is a Parquet file, but it is being read as CSV",
            file=str(path),
            hint="pass --format parquet (or give the file a .parquet suffix)",
        )
    if fmt == "parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise DataError(
                f"not a readable Parquet file ({exc})",
                file=str(path),
                hint="pass --format csv if it is a CSV file",
            ) from exc
        raw.columns = [str(c) for c in raw.columns]
    else:
        if not dialect.header and not column_order:
            raise DataError(
                "the dialect says the file has no header, but no column order is configured",
                file=str(path),
                hint="set column_order = [...] (canonical names in file order) for this table",
            )
        try:
            raw = pd.read_csv(
                path,
                sep=dialect.delimiter,
                encoding=dialect.encoding,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                header=0 if dialect.header else None,
                names=None if dialect.header else column_order,
            )
        except UnicodeDecodeError as exc:
            raise DataError(
                f"cannot decode the file as {dialect.encoding} ({exc.reason} at byte {exc.start})",
                file=str(path),
                hint="set [import.dialect] encoding (e.g. 'cp1252' or 'latin-1')",
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise DataError("the file has no content", file=str(path), hint="export the table again") from exc
        except pd.errors.ParserError as exc:
            raise DataError(
                f"not readable as CSV with delimiter {dialect.delimiter!r}: {exc}",
                file=str(path),
                hint="check [import.dialect] delimiter and quoting of the export",
            ) from exc
    # spreadsheet exports often start with a byte-order mark or pad header cells with spaces
    raw.columns = [str(c).lstrip("\ufeff").strip() for c in raw.columns]
    if len(raw) == 0:
        raise DataError(
            "the file has a header but no data rows",
            file=str(path),
            hint="export a table with data, or leave this file out (only orders are required)",
        )
    return raw.reset_index(drop=True)


def _magic(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(4)


def _read_table(table: str, path: Path, fmt: str, icfg: ImportConfig) -> _Parsed:
    src: TableSource = getattr(icfg, table)
    try:
        raw = read_raw(path, fmt, icfg.dialect, src.column_order)
    except DataError as exc:
        raise _Problems([exc]) from exc
    by_user = {user: canon for canon, user in src.columns.items()}
    names = {by_user.get(c, c): c for c in raw.columns}
    known = [c for c in (*REQUIRED[table], *OPTIONAL[table]) if c in names]
    missing = [c for c in REQUIRED[table] if c not in names]
    if missing:
        mapped = {c: src.columns[c] for c in missing if c in src.columns}
        raise _Problems(
            [
                DataError(
                    f"missing required column(s) {missing}"
                    + (f" (looked for {mapped})" if mapped else "")
                    + f"; the file has {list(raw.columns)}",
                    file=str(path),
                    column=missing[0],
                    hint=f'map your column names in rebuy.toml: [import.{table}.columns] {missing[0]} = "<your name>"',
                )
            ]
        )
    parsed = _Parsed(table, path, raw, pd.DataFrame(index=raw.index), known, {c: names[c] for c in known})
    errors: list[DataError] = []
    for canon in known:
        try:
            parsed.frame[canon] = _convert(canon, raw[names[canon]], parsed, icfg)
        except DataError as exc:
            errors.append(exc)
    if errors:
        raise _Problems(errors)
    # columns not read from the file: defaults, or computed (order_id, returned_amount from returns)
    parsed.derived = [c for c in empty(table).columns if c not in known]
    return parsed


def _convert(canon: str, s: pd.Series, p: _Parsed, icfg: ImportConfig) -> pd.Series:
    limit = icfg.error_rows
    if canon in ID_COLUMNS or canon in TEXT_COLUMNS:
        if pd.api.types.is_float_dtype(s) and canon in ID_COLUMNS:
            raise p.error(
                "ids are stored as floating-point numbers; their exact text is lost",
                canon,
                s.index[:limit],
                "export ids as text (or integers) so that e.g. '007' stays '007'",
                limit,
            )
        if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
            return s.astype(str).astype(object)
        if canon == "timezone":
            unknown = s.notna() & ~s.isin(list(_zones()))
            if unknown.any():
                raise p.error(
                    f"unknown time zone names {sorted(set(s[unknown].astype(str)))[:5]}",
                    canon,
                    s.index[unknown],
                    "use IANA names such as 'Europe/Berlin' (they decide quiet hours), or leave the cell empty",
                    limit,
                )
        return s.astype(object).where(s.notna(), None)
    if canon in FLOAT_COLUMNS or canon in INT_COLUMNS:
        return _numbers(canon, s, p, icfg)
    if canon in BOOL_COLUMNS:
        return _bools(canon, s, p, limit)
    if canon in DATE_COLUMNS:
        return _dates(canon, s, p, icfg)
    return _timestamps(canon, s, p, icfg)


def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def parse_numbers(s: pd.Series, dialect: DialectConfig) -> tuple[pd.Series, pd.Series]:
    """Numbers written in the export's locale -> float; also the mask of non-empty unparseable cells."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float), pd.Series(False, index=s.index)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float), pd.Series(False, index=s.index)
    text = s.astype("string[pyarrow]").str.strip()
    if dialect.thousands:
        text = text.str.replace(dialect.thousands, "", regex=False)
    if dialect.decimal != ".":
        text = text.str.replace(dialect.decimal, ".", regex=False)
    values = pd.to_numeric(text, errors="coerce").astype(float)
    nan_words = text.str.lower().isin(["nan", "na", "null", "none"])
    bad = text.notna() & values.isna() & ~nan_words
    return values, bad.fillna(False).astype(bool)


def _numbers(canon: str, s: pd.Series, p: _Parsed, icfg: ImportConfig) -> pd.Series:
    values, bad = parse_numbers(s, icfg.dialect)
    limit = icfg.error_rows
    if bad.any():
        d = icfg.dialect
        raise p.error(
            f"wrong type: {int(bad.sum())} value(s) are not numbers (decimal mark {d.decimal!r}, "
            f"thousands separator {d.thousands!r})",
            canon,
            s.index[bad],
            "fix the values, or set [import.dialect] decimal / thousands to match the export",
            limit,
        )
    if canon in INT_COLUMNS:
        frac = values.notna() & (values != values.round())
        if frac.any():
            raise p.error(
                "wrong type: counts must be whole numbers", canon, s.index[frac], "fix the values", limit
            )
        if values.isna().any():
            raise p.error(
                "missing counts",
                canon,
                s.index[values.isna()],
                "fill in the counts or drop the column",
                limit,
            )
        return values.astype("int64")
    if canon in {"discount", "returned_amount"}:
        values = values.fillna(0.0)
    return values


def _bools(canon: str, s: pd.Series, p: _Parsed, limit: int) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(bool)
    text = s.astype("string[pyarrow]").str.strip().str.lower()
    yes, no = text.isin(_TRUE).fillna(False), text.isin(_FALSE).fillna(False)
    bad = ~(yes | no)
    if bad.any():
        raise p.error(
            "wrong type: not a yes/no value (true/false, yes/no, 1/0)",
            canon,
            s.index[bad],
            "write consents as true/false, yes/no or 1/0; an empty cell is not a consent",
            limit,
        )
    return yes.astype(bool)


def _dates(canon: str, s: pd.Series, p: _Parsed, icfg: ImportConfig) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        return out.dt.normalize().astype("datetime64[ns]")
    text = s.astype("string[pyarrow]").str.strip()
    fmt = icfg.dialect.date_format
    parsed = pd.to_datetime(text, format=fmt, errors="coerce") if fmt else pd.Series(pd.NaT, index=s.index)
    # a date_format with a time part does not fit plain dates: fall back to ISO dates
    parsed = parsed.fillna(pd.to_datetime(text, format="ISO8601", errors="coerce"))
    bad = text.notna() & parsed.isna()
    if bad.any():
        raise p.error(
            "unparseable dates",
            canon,
            s.index[bad],
            "write dates as YYYY-MM-DD or in [import.dialect] date_format",
            icfg.error_rows,
        )
    return parsed.dt.normalize().astype("datetime64[ns]")


def parse_timestamps(
    s: pd.Series, dialect: DialectConfig
) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Text or datetimes -> UTC, honouring per-value offsets (mixed offsets are fine).

    Naive values are localised to `dialect.timezone`; with no zone they are left NaT and flagged,
    never guessed. Returns (utc values, unparseable mask, naive-without-zone mask, DST-adjusted mask).
    """
    none = pd.Series(False, index=s.index)
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            return s.dt.tz_convert("UTC").astype(UTC_TS), none, none, none
        aware_mask, text = none, None
        naive_values = s
    else:
        text = s.astype("string[pyarrow]").str.strip()
        fmt = dialect.date_format
        if fmt:
            has_zone = ("%z" in fmt) or ("%Z" in fmt)
            aware_mask = text.notna() & has_zone
        else:
            aware_mask = text.str.contains(_OFFSET, regex=True, na=False)
        naive_values = pd.to_datetime(text.where(~aware_mask), format=fmt or "ISO8601", errors="coerce")
    out = pd.Series(pd.NaT, index=s.index, dtype=UTC_TS)
    bad = none.copy()
    if text is not None and aware_mask.any():
        aware = pd.to_datetime(
            text[aware_mask], format=dialect.date_format or "ISO8601", errors="coerce", utc=True
        )
        out.loc[aware_mask] = aware
        bad |= aware_mask & out.isna()
    naive_mask = ~aware_mask & naive_values.notna()
    if text is not None:
        bad |= ~aware_mask & text.notna() & naive_values.isna()
    unzoned = none.copy()
    shifted = none.copy()
    if naive_mask.any():
        if dialect.timezone is None:
            unzoned = naive_mask
        else:
            local = naive_values[naive_mask]
            strict = local.dt.tz_localize(dialect.timezone, ambiguous="NaT", nonexistent="NaT")
            # DST edges: ambiguous times read as summer time, skipped times shifted forward; counted.
            lenient = local.dt.tz_localize(
                dialect.timezone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="shift_forward"
            )
            shifted.loc[naive_mask] = strict.isna().to_numpy()
            out.loc[naive_mask] = lenient.dt.tz_convert("UTC")
    return out.astype(UTC_TS), bad, unzoned, shifted


def _timestamps(canon: str, s: pd.Series, p: _Parsed, icfg: ImportConfig) -> pd.Series:
    values, bad, unzoned, shifted = parse_timestamps(s, icfg.dialect)
    limit = icfg.error_rows
    if bad.any():
        fmt = icfg.dialect.date_format
        raise p.error(
            f"unparseable timestamps ({int(bad.sum())} value(s)); expected "
            + (f"format {fmt!r}" if fmt else "ISO 8601, e.g. 2025-03-01T14:05:00+01:00"),
            canon,
            s.index[bad],
            "fix the values or set [import.dialect] date_format (strftime codes)",
            limit,
        )
    if unzoned.any():
        raise p.error(
            f"timestamps without a time zone ({int(unzoned.sum())} value(s)) and no zone configured; "
            "rebuy will not guess one",
            canon,
            s.index[unzoned],
            'set [import.dialect] timezone = "Europe/Berlin" (the zone the shop\'s clock uses), '
            "or export timestamps with an offset",
            limit,
        )
    missing = values.isna() & ~bad & ~unzoned
    if missing.any():
        raise p.error("missing timestamps", canon, s.index[missing], "fill in or drop these rows", limit)
    if shifted.any():
        p.notes.append(
            f"{p.path.name} {canon}: {int(shifted.sum())} local time(s) at a DST change resolved "
            "(repeated hour read as summer time, skipped hour shifted forward)"
        )
    return values


# --- checks on converted tables --------------------------------------------------------------------


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _returns(orders: _Parsed, mode: str, notes: list[str]) -> list[DataError]:
    """Negative amounts as returns of the customer's latest earlier order (or left for the reject check).

    A return row is removed and its amount added to `returned_amount` of the order it returns from,
    so revenue is never silently netted inside one order's amount.
    """
    f = orders.frame
    negative = f["amount"] < 0
    if mode != "returned_amount" or not negative.any():
        return []
    if "returned_amount" not in f.columns:
        f["returned_amount"] = 0.0
    rets = f.loc[negative, ["customer_id", "ordered_at", "amount"]].assign(_row=f.index[negative])
    buys = f.loc[~negative & f["amount"].notna(), ["customer_id", "ordered_at"]].assign(
        _target=f.index[~negative & f["amount"].notna()]
    )
    matched = pd.merge_asof(
        rets.sort_values("ordered_at"),
        buys.sort_values("ordered_at"),
        on="ordered_at",
        by="customer_id",
        direction="backward",
        allow_exact_matches=True,
    )
    orphans = matched.loc[matched["_target"].isna(), "_row"]
    if len(orphans):
        return [
            orders.error(
                f"{len(orphans)} return(s) (negative amount) with no earlier order of the same customer",
                "amount",
                list(orphans),
                "remove them, or include the orders they return from",
                5,
            )
        ]
    add = (-matched["amount"]).groupby(matched["_target"].astype(f.index.dtype)).sum()
    f.loc[add.index, "returned_amount"] = f.loc[add.index, "returned_amount"] + add
    orders.frame = f.loc[~negative].copy()
    notes.append(
        f"{int(negative.sum())} negative order row(s) booked as returned_amount of the customer's latest "
        "earlier order (and removed as orders)"
    )
    return []


def _map_event_types(events: _Parsed, mapping: dict[str, str]) -> None:
    s = events.frame["event_type"]
    if mapping:
        events.frame["event_type"] = s.where(~s.isin(list(mapping)), s.map(mapping))


def _friendly(table: str, column: str, check: str, values: list, icfg: ImportConfig) -> tuple[str, str]:
    """A pandera check name -> (problem, what to do) in the user's terms."""
    n = len(values)
    if check == "not_nullable":
        return f"missing values ({n})", "fill in or remove these rows"
    if check in {"field_uniqueness", "unique"}:
        if column == "order_id":
            return (
                f"duplicate order_id ({n} rows share an id)",
                "order ids must be unique: remove duplicated rows, or do not map order_id so rebuy derives ids",
            )
        return f"duplicate {column} ({n} rows)", f"{table} must have one row per {column}"
    if check.startswith("isin") and column == "event_type":
        names = sorted({str(v) for v in values})[:10]
        return (
            f"unknown event types {names}",
            'map the shop\'s names in rebuy.toml: [import] event_type_map = { "<your name>" = "view" }; '
            f"known types: {list(EVENT_TYPES)}",
        )
    if check.startswith("isin") and table == "messages" and column in ("channel", "source"):
        names = sorted({str(v) for v in values})[:10]
        known = MESSAGE_CHANNELS if column == "channel" else MESSAGE_SOURCES
        return (
            f"unknown message {column}s {names}",
            f"use one of {list(known)} (map the export's values before importing)",
        )
    if check.startswith("isin"):
        return f"unknown values {sorted({str(v) for v in values})[:10]}", f"allowed: {check}"
    if check.startswith("greater_than_or_equal_to") and column == "amount":
        hint = (
            'set [import] returns = "returned_amount" to book them as returns of the customer\'s latest '
            "earlier order, or remove them"
            if icfg.returns == "reject"
            else "remove them"
        )
        return f"negative amounts ({n}; returns or refunds?) and returns are configured to be rejected", hint
    if check.startswith("greater_than_or_equal_to"):
        return f"negative values ({n})", "these columns cannot be negative"
    return f"fails check {check} ({n} values)", "see rebuy.contract for the canonical form"


def _schema_problems(table: str, df: pd.DataFrame, p: _Parsed, icfg: ImportConfig) -> list[DataError]:
    """The contract's pandera schema, run lazily so every failing check is reported at once."""
    import pandera.errors as pae

    try:
        SCHEMAS[table].validate(df, lazy=True)
    except pae.SchemaErrors as exc:
        cases = exc.failure_cases
        out = []
        for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
            problem, hint = _friendly(table, str(column), str(check), list(group["failure_case"]), icfg)
            index = [i for i in group["index"].dropna().tolist() if i in p.raw.index]
            out.append(p.error(problem, str(column), index, hint, icfg.error_rows))
        return out
    return []


def _after_as_of(
    tables: dict[str, pd.DataFrame], parsed: dict[str, _Parsed], as_of: pd.Timestamp, icfg: ImportConfig
) -> list[DataError]:
    out = []
    for table, df in tables.items():
        col = TIMESTAMPS[table][0]
        late = df[col] > as_of
        if late.any():
            out.append(
                parsed[table].error(
                    f"{int(late.sum())} timestamp(s) after --as-of {as_of:%Y-%m-%d %H:%M:%S} UTC",
                    col,
                    list(df.index[late]),
                    "pass a later --as-of, or remove rows from the future (a clock or time-zone problem?)",
                    icfg.error_rows,
                )
            )
    return out


def _cross_customer_checks(
    tables: dict[str, pd.DataFrame], parsed: dict[str, _Parsed], icfg: ImportConfig
) -> list[DataError]:
    """Orders must belong to known customers and not precede their signup."""
    customers, orders = tables["customers"], tables["orders"]
    signup = customers.drop_duplicates("customer_id").set_index("customer_id")["signup_at"]
    known = orders["customer_id"].isin(signup.index)
    out = []
    if (~known).any():
        ids = sorted(orders.loc[~known, "customer_id"].astype(str).unique())[:5]
        out.append(
            parsed["orders"].error(
                f"{int((~known).sum())} order(s) of customers not in the customers file (e.g. {ids})",
                "customer_id",
                list(orders.index[~known]),
                "add these customers to the customers file, or import without one to derive customers from orders",
                icfg.error_rows,
            )
        )
    first = orders["customer_id"].map(signup)
    early = known & (orders["ordered_at"] < first)
    if early.any():
        out.append(
            parsed["orders"].error(
                f"{int(early.sum())} order(s) before the customer's signup_at",
                "ordered_at",
                list(orders.index[early]),
                "check signup_at and the time zones of both files: a customer signs up no later than the first order",
                icfg.error_rows,
            )
        )
    return out
