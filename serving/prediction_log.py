"""The prediction log: what the service scored, with the features it used, for drift monitoring.

`pipelines.drift_sources` reads it with `read(cfg)` as its preferred "current" data: one row per
(customer, model) with `customer_id, model, version, scored_at, score` and the model's features by
name. The request path only appends references to an in-memory buffer; a background thread writes
Parquet segments (temp name + rename, one writer per process, so files are never half-written) and
keeps the newest `serving.prediction_log_max_rows` rows. Cold-start rows are not logged: they carry
no features, only defaults, and would read as drift.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rebuy.config import Config
    from serving.scorer import ScoreBatch, Scorer

FOLDER = "prediction_log"


def folder(cfg: Config) -> Path:
    return cfg.paths.runtime_dir / FOLDER


def batch_rows(
    scorer: Scorer, batch: ScoreBatch, mats: dict[str, np.ndarray], scored_at: pd.Timestamp, keep: np.ndarray
) -> pd.DataFrame:
    """Long rows (one per customer and model) of the kept customers, features by name."""
    if not keep.any():
        return pd.DataFrame()
    ids = np.asarray(batch.customer_ids, dtype=object)[keep]
    frames = []
    for name, model in scorer.models.items():
        X = scorer.model_matrix(name, mats)[keep]
        df = pd.DataFrame(X, columns=list(model.feature_names))
        df.insert(0, "customer_id", ids)
        df.insert(1, "model", name)
        df.insert(2, "version", str(model.version))
        df.insert(3, "scored_at", scored_at)
        df.insert(4, "score", getattr(batch, name)[keep])  # ScoreBatch names its columns after the models
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["scored_at"] = pd.to_datetime(out["scored_at"], utc=True)
    return out


class PredictionLog:
    """Buffered, sampled, size-capped Parquet log of served predictions (one instance per worker)."""

    def __init__(
        self,
        path: Path,
        sample: float,
        max_rows: int,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 10.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"serving.prediction_log_sample={sample} must be within [0, 1]")
        self.path = Path(path)
        self.sample = sample
        self.max_rows = max_rows
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rng = np.random.default_rng(seed)
        self._buffer: list[tuple[Scorer, ScoreBatch, dict[str, np.ndarray], pd.Timestamp, np.ndarray]] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    def add(
        self, scorer: Scorer, batch: ScoreBatch, mats: dict[str, np.ndarray], scored_at: pd.Timestamp
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
            self._buffer.append((scorer, batch, mats, scored_at, keep))
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
        frame = pd.concat([batch_rows(*item) for item in items], ignore_index=True)
        if frame.empty:
            return 0
        self.path.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        tmp = self.path / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path / name)
        self.prune()
        return len(frame)

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


def read(cfg: Config) -> pd.DataFrame | None:
    """Every logged row (oldest first), or None when nothing was logged yet."""
    files = sorted(folder(cfg).glob("*.parquet"))
    if not files:
        return None
    frames: list[Any] = [pd.read_parquet(f) for f in files]
    return pd.concat(frames, ignore_index=True)
