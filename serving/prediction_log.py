"""The prediction log: what the service scored, with the features it used, for drift monitoring.

`pipelines.drift_sources` reads it with `read(cfg)` as its preferred "current" data: one row per
(customer, model) with `customer_id, model, version, scored_at, score` and the model's features by
name. The request path only appends references to an in-memory buffer; a background thread writes
Parquet segments (temp name + rename, one writer per process, so files are never half-written) and
keeps the newest `serving.prediction_log_max_rows` rows. Cold-start rows are not logged: they carry
no features, only defaults, and would read as drift.

Shared infrastructure (`[stores] prediction_log = "postgresql+psycopg://..."`): the same rows go to one
table, `prediction_log` (migration 0002 of pipelines/migrations; created here too if the service starts
before any `rebuy db upgrade`), written by every worker and host; the model's features are one JSON object
per row. `read(cfg)` returns the same frame from either. `open_log(cfg)` builds the configured one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from rebuy.files import write_parquet

if TYPE_CHECKING:
    from rebuy.config import Config
    from serving.scorer import ScoreBatch, Scorer

FOLDER = "prediction_log"
TABLE = "prediction_log"
BASE_COLUMNS = ["customer_id", "model", "version", "scored_at", "score"]


def _table() -> Any:
    """The prediction-log table (the shape migration 0002 creates)."""
    import sqlalchemy as sa

    md = sa.MetaData()
    return sa.Table(
        TABLE,
        md,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("customer_id", sa.String(256), nullable=False, index=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False, index=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=True),
        sa.Column("as_of", sa.DateTime(), nullable=True),
    )


def folder(cfg: Config) -> Path:
    return cfg.paths.runtime_dir / FOLDER


# (scorer, batch, matrices, scored_at, kept rows, received_at, as_of): `scored_at` is what drift dates rows
# by (the request's as_of only from a caller holding the API key, else received_at); as_of may be None
Item = tuple[
    "Scorer",
    "ScoreBatch",
    dict[str, np.ndarray],
    pd.Timestamp,
    np.ndarray,
    "pd.Timestamp | None",
    "pd.Timestamp | None",
]


def batch_rows(
    scorer: Scorer, batch: ScoreBatch, mats: dict[str, np.ndarray], scored_at: pd.Timestamp, keep: np.ndarray
) -> pd.DataFrame:
    """Long rows (one per customer and model) of the kept customers, features by name."""
    return items_rows([(scorer, batch, mats, scored_at, keep, None, None)])


def _stamps(group: list[Item], pos: int) -> pd.DatetimeIndex:
    """The optional timestamp at `pos` of each item, repeated per kept row (NaT where absent)."""
    nat = np.iinfo(np.int64).min  # NaT's integer value
    at = []
    for it in group:
        t = cast("pd.Timestamp | None", it[pos])
        at.append(np.full(int(it[4].sum()), nat if t is None else pd.Timestamp(t).value, np.int64))
    return pd.to_datetime(np.concatenate(at), utc=True)


def items_rows(items: list[Item]) -> pd.DataFrame:
    """Long rows of many buffered requests at once: one DataFrame per (scorer, model), not per request.

    Building frames per request cost ~2 ms of CPU for a one-customer request (four small frames with
    column inserts) — more than scoring it; stacking the kept rows with numpy first makes the log's
    cost per request a few microseconds. Rows come grouped by scorer (a reload starts a new group)
    and model, in request order within a group.
    """
    groups: dict[int, list[Item]] = {}
    for item in items:
        if item[4].any():
            groups.setdefault(id(item[0]), []).append(item)
    frames = []
    for group in groups.values():
        scorer = group[0][0]
        ids = np.concatenate([np.asarray(it[1].customer_ids, dtype=object)[it[4]] for it in group])
        at = np.concatenate(
            [np.full(int(it[4].sum()), pd.Timestamp(it[3]).value, dtype=np.int64) for it in group]
        )
        scored_at = pd.to_datetime(at, utc=True)

        received_at, as_of = _stamps(group, 5), _stamps(group, 6)
        for name, model in scorer.models.items():
            X = np.concatenate([scorer.model_matrix(name, it[2])[it[4]] for it in group])
            score = np.concatenate([getattr(it[1], name)[it[4]] for it in group])
            cols: dict[str, object] = {
                "customer_id": ids,
                "model": name,
                "version": str(model.version),
                "scored_at": scored_at,
                "received_at": received_at,
                "as_of": as_of,
                "score": score,  # ScoreBatch names its columns after the models
            }
            cols |= {f: X[:, j] for j, f in enumerate(model.feature_names)}
            frames.append(pd.DataFrame(cols))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _naive_utc(ts: pd.Timestamp | None) -> Any:
    """A naive UTC datetime for a DateTime column (None stays None)."""
    return None if ts is None else pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).to_pydatetime()


def items_records(items: list[Item]) -> list[dict[str, Any]]:
    """Rows for the table: one per (customer, model), the model's own features as JSON (NaN -> null)."""
    out: list[dict[str, Any]] = []
    for scorer, batch, mats, scored_at, keep, received_at, as_of in items:
        if not keep.any():
            continue
        ids = np.asarray(batch.customer_ids, dtype=object)[keep].tolist()
        at, received, asked = (_naive_utc(t) for t in (scored_at, received_at, as_of))
        for name, model in scorer.models.items():
            X = scorer.model_matrix(name, mats)[keep]
            obj = X.astype(object)
            obj[np.isnan(X)] = None
            names = list(model.feature_names)
            scores = np.asarray(getattr(batch, name))[keep].tolist()
            for cid, score, row in zip(ids, scores, obj.tolist(), strict=True):
                out.append(
                    {
                        "customer_id": str(cid),
                        "model": name,
                        "version": str(model.version),
                        "scored_at": at,
                        "score": None if score != score else float(score),
                        "features": json.dumps(dict(zip(names, row, strict=True))),
                        "received_at": received,
                        "as_of": asked,
                    }
                )
    return out


class PredictionLog:
    """Buffered, sampled, size-capped log of served predictions (one instance per worker): Parquet segments
    in `path`, or rows of the `prediction_log` table at `url`."""

    def __init__(
        self,
        path: Path,
        sample: float,
        max_rows: int,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 10.0,
        seed: int | None = None,
        url: str | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"serving.prediction_log_sample={sample} must be within [0, 1]")
        self.path = Path(path)
        self.sample = sample
        self.max_rows = max_rows
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rng = np.random.default_rng(seed)
        self._buffer: list[Item] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.url = url
        self._engine: Any = None

    def add(
        self,
        scorer: Scorer,
        batch: ScoreBatch,
        mats: dict[str, np.ndarray],
        scored_at: pd.Timestamp,
        *,
        received_at: pd.Timestamp | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> None:
        """Hot path: keep references only (the arrays are not modified after scoring)."""
        if self.sample <= 0.0:
            return
        keep = ~batch.cold_start
        if self.sample < 1.0:
            keep &= self._rng.random(len(batch)) < self.sample
        n = int(keep.sum())
        if n == 0:
            return
        with self._lock:
            self._buffer.append((scorer, batch, mats, scored_at, keep, received_at or scored_at, as_of))
            self._pending += n
            if self._pending >= self.flush_rows:
                self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rebuy-prediction-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered as one Parquet segment; returns the rows written."""
        with self._lock:
            items, self._buffer, self._pending = self._buffer, [], 0
        if not items:
            return 0
        if self.url is not None:
            return self._flush_table(items)
        frame = items_rows(items)
        if frame.empty:
            return 0
        self.path.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        write_parquet(frame, self.path / name)
        self.prune()
        return len(frame)

    def _flush_table(self, items: list[Item]) -> int:
        import sqlalchemy as sa

        rows = items_records(items)
        if not rows:
            return 0
        table = _table()
        if self._engine is None:
            self._engine = sa.create_engine(str(self.url))
            table.metadata.create_all(self._engine, checkfirst=True)
        with self._engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
            top = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
            if top > self.max_rows:  # ids grow by insert: the oldest rows are the smallest ids
                conn.execute(sa.delete(table).where(table.c.id <= top - self.max_rows))
        return len(rows)

    def prune(self) -> None:
        """Drop the oldest segments while the log holds more than max_rows."""
        import pyarrow.parquet as pq

        files = sorted(self.path.glob("*.parquet"))
        rows = [pq.read_metadata(f).num_rows for f in files]
        total = sum(rows)
        for f, n in zip(files, rows, strict=True):
            if total <= self.max_rows:
                break
            f.unlink(missing_ok=True)
            total -= n


def open_log(cfg: Config, **kwargs: Any) -> PredictionLog:
    """The prediction log `[stores] prediction_log` names (Parquet under the data directory by default)."""
    url = None if cfg.stores.prediction_log == "parquet" else cfg.stores.prediction_log
    return PredictionLog(
        folder(cfg), cfg.serving.prediction_log_sample, cfg.serving.prediction_log_max_rows, url=url, **kwargs
    )


def _read_table(url: str) -> pd.DataFrame | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE):
                return None
            t = _table()
            got = conn.execute(
                sa.select(*[t.c[c] for c in [*BASE_COLUMNS, "features", "received_at", "as_of"]]).order_by(
                    t.c.id
                )
            ).all()
    finally:
        engine.dispose()
    if not got:
        return None
    base = pd.DataFrame([r[:5] for r in got], columns=BASE_COLUMNS)
    base["scored_at"] = pd.to_datetime(base["scored_at"]).dt.tz_localize("UTC")
    base["score"] = base["score"].astype(float)
    for i, name in ((6, "received_at"), (7, "as_of")):
        base[name] = pd.to_datetime([r[i] for r in got]).tz_localize("UTC")
    feats = pd.DataFrame.from_records([json.loads(r[5]) for r in got]).astype(float)
    return pd.concat([base, feats], axis=1)


def read(cfg: Config) -> pd.DataFrame | None:
    """Every logged row (oldest first), or None when nothing was logged yet."""
    if cfg.stores.prediction_log != "parquet":
        return _read_table(cfg.stores.prediction_log)
    files = sorted(folder(cfg).glob("*.parquet"))
    if not files:
        return None
    frames: list[Any] = [pd.read_parquet(f) for f in files]
    return pd.concat(frames, ignore_index=True)
