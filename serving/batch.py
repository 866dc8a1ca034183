"""`rebuy score`: offline batch scoring through the same `Scorer` the service uses.

Customers are scored in chunks (feature read -> models -> frame), so memory stays flat for a large
shop; the Parquet file is written to a temporary name and renamed, so a failed run leaves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rebuy.config import Config
from rebuy.errors import DataError
from rebuy.files import write_parquet
from serving.scorer import Scorer

CHUNK = 20_000


@dataclass(frozen=True)
class BatchResult:
    path: Path
    customers: int
    cold_start: int
    read_seconds: float
    model_seconds: float
    total_seconds: float
    model_versions: dict[str, str]


def all_customer_ids(cfg: Config) -> list[str]:
    """Every customer of the canonical data (customers table, or derived from orders when absent)."""
    path = cfg.paths.canonical / "customers.parquet"
    if path.is_file():
        ids = pd.read_parquet(path, columns=["customer_id"])["customer_id"]
    else:
        from rebuy.ingest import read_canonical

        ids = read_canonical(cfg.paths.data_dir)["customers"]["customer_id"]
    return [str(c) for c in ids.tolist()]


def read_id_list(path: Path) -> list[str]:
    """A list of customer ids: one per line, or a Parquet/CSV file with a customer_id column."""
    if not path.is_file():
        raise DataError(
            "customer list not found", file=str(path), hint="pass an existing file to --customers"
        )
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not ids:
            raise DataError("customer list is empty", file=str(path), hint="one customer id per line")
        return ids
    if "customer_id" not in df.columns:
        raise DataError(
            "no customer_id column",
            file=str(path),
            column="customer_id",
            hint=f"columns found: {list(df.columns)[:10]}",
        )
    ids = df["customer_id"].astype(str).tolist()
    if not ids:
        raise DataError("customer list is empty", file=str(path), column="customer_id")
    return ids


def score_frame(
    scorer: Scorer,
    customer_ids: Sequence[str],
    as_of: pd.Timestamp,
    offers: Sequence[str] | None = None,
    *,
    reasons: bool = True,
    chunk: int = CHUNK,
    threads: int = 2,
    progress: object | None = None,
) -> tuple[pd.DataFrame, float, float]:
    """Score ids chunk by chunk -> (frame, seconds reading features, seconds in the models).

    Chunks run on `threads` threads: LightGBM releases the GIL while predicting, so two chunks use
    both cores even though every booster is pinned to num_threads=1 (as in serving). Times are summed
    over threads (CPU-seconds, not wall time).
    """
    from concurrent.futures import ThreadPoolExecutor

    eligible = scorer.eligible(offers)

    def one(ids: list[str]) -> tuple[pd.DataFrame, float, float]:
        t0 = time.perf_counter()
        mats, cold, age = scorer.read(ids, as_of)
        t1 = time.perf_counter()
        batch = scorer.score_matrices(ids, mats, cold, age, eligible, reasons=reasons)
        t2 = time.perf_counter()
        if progress is not None:
            progress(len(ids))  # type: ignore[operator]
        return batch.to_frame(as_of), t1 - t0, t2 - t1

    chunks = [list(customer_ids[i : i + chunk]) for i in range(0, len(customer_ids), chunk)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = list(pool.map(one, chunks))
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    return frame, sum(p[1] for p in parts), sum(p[2] for p in parts)


def score_to_parquet(
    cfg: Config,
    as_of: pd.Timestamp,
    out: Path,
    customer_ids: Sequence[str] | None = None,
    offers: Sequence[str] | None = None,
    *,
    reasons: bool = True,
    scorer: Scorer | None = None,
) -> BatchResult:
    """The batch-scoring stage: champions + online features -> one Parquet row per customer."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    t0 = time.perf_counter()
    if scorer is None:
        from serving.champions import scorer_from_registry

        scorer = scorer_from_registry(cfg)
    ids = list(customer_ids) if customer_ids is not None else all_customer_ids(cfg)
    if not ids:
        raise DataError("no customers to score", hint="import data first or pass --customers")
    dupes = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
    if dupes:
        raise DataError(
            f"duplicate customer ids in the list: {dupes[:5]}",
            column="customer_id",
            hint="score each customer once",
        )
    with Progress(
        TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task("score", total=len(ids))
        frame, t_read, t_model = score_frame(
            scorer, ids, as_of, offers, reasons=reasons, progress=lambda n: bar.advance(task, n)
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(frame, out)
    return BatchResult(
        path=out,
        customers=len(frame),
        cold_start=int(frame["cold_start"].sum()),
        read_seconds=t_read,
        model_seconds=t_model,
        total_seconds=time.perf_counter() - t0,
        model_versions=scorer.model_versions,
    )
