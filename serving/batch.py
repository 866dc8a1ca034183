"""`rebuy score`: offline batch scoring through the same `Scorer` the service uses.

Customers are scored in chunks (feature read -> models -> frame), so memory stays flat for a large
shop; the Parquet file is written to a temporary name and renamed, so a failed run leaves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rebuy.config import Config
from rebuy.errors import DataError
from rebuy.files import swap_in_dir, write_parquet
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


def ids_to_score(cfg: Config, customer_ids: Sequence[str] | None) -> list[str]:
    """The given ids (every known customer when None), refused when empty or when an id repeats."""
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
    return ids


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
    ids = ids_to_score(cfg, customer_ids)
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


# --- `rebuy score --engine spark` ------------------------------------------------------------------------
#
# The same Scorer on Spark executors: each executor rebuilds it from the champions' own files (LightGBM
# native text, JSON metadata; broadcast once as bytes, never pickled objects) with the loaders serving
# uses, reads each customer's latest feature snapshot at or before `as_of` from the snapshots partitioned
# by cutoff (what the online store holds after materialization), and scores its partition with
# `Scorer.score_matrices` in mapInPandas. The output is a Parquet directory written by the executors.


@dataclass(frozen=True)
class ChampionFiles:
    """Every file of each champion's bundle directory, by model name: what executors rebuild models from."""

    models: dict[str, tuple[str, str, dict[str, bytes]]]  # name -> (registered name, version, files)
    offer: tuple[str, dict[str, bytes]] | None  # (version, files) of the offer model, if one is promoted
    config_json: str

    @staticmethod
    def files(path: Path) -> dict[str, bytes]:
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

    @classmethod
    def from_registry(cls, cfg: Config) -> ChampionFiles:
        """The @champion bundles, downloaded once under <mlflow_dir>/bundles as `rebuy score` loads them."""
        from serving.champions import load_models, load_offer_model

        bundles = cfg.paths.mlflow_dir / "bundles"
        models = {
            name: (m.name, str(m.version), cls.files(bundles / m.name / str(m.version)))
            for name, m in load_models(cfg).items()
        }
        offer = load_offer_model(cfg)
        offer_files = None
        if offer is not None:
            from training.offer import REGISTERED_NAME

            offer_files = (str(offer.version), cls.files(bundles / REGISTERED_NAME / str(offer.version)))
        return cls(models, offer_files, cfg.model_dump_json(by_alias=True))


class _ServiceColumns:
    """A FeatureReader stand-in that only carries a service's column order (Spark supplies the rows)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.feature_names = list(names)

    def read(self, customer_ids: Sequence[str], now: pd.Timestamp) -> tuple:
        raise RuntimeError("features come from the Spark snapshots, not an online reader")


_EXECUTOR_SCORERS: dict[tuple, Scorer] = {}


def scorer_from_files(champions: ChampionFiles) -> Scorer:
    """The Scorer `rebuy score` builds, from the champions' files (cached per Python worker)."""
    import tempfile
    from functools import partial

    from features.training_set import feature_names
    from serving.champions import high_value_cut
    from training.registry import read_bundle_dir
    from training.segments import segment

    key = (
        champions.config_json,
        tuple((name, reg, v) for name, (reg, v, _) in sorted(champions.models.items())),
        champions.offer[0] if champions.offer else None,
    )
    if key in _EXECUTOR_SCORERS:
        return _EXECUTOR_SCORERS[key]
    root = Path(tempfile.mkdtemp(prefix="rebuy-champions-"))

    def unpack(folder: str, files: dict[str, bytes]) -> Path:
        for rel, data in files.items():
            target = root / folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return root / folder

    cfg = Config.model_validate_json(champions.config_json)
    models = {
        name: read_bundle_dir(unpack(name, files), registered, version)
        for name, (registered, version, files) in champions.models.items()
    }
    offer = None
    if champions.offer is not None:
        from training.offer import OfferModel

        offer = OfferModel.load(unpack("offer", champions.offer[1]), champions.offer[0])
    services = {m.feature_service for m in models.values()} | ({offer.feature_service} if offer else set())
    scorer = Scorer(
        models=models,
        readers={svc: _ServiceColumns(feature_names(cfg, svc)) for svc in services},
        segmenter=partial(
            segment, cut=float(high_value_cut(models["value"].meta, cfg)), cfg=cfg.training.segments
        ),
        catalogue=tuple(cfg.offers.catalogue),
        offer_model=offer,
    )
    _EXECUTOR_SCORERS[key] = scorer
    return scorer


def score_snapshot_rows(
    scorer: Scorer, rows: pd.DataFrame, as_of: pd.Timestamp, offers: tuple[str, ...], *, reasons: bool
) -> pd.DataFrame:
    """Score rows of (customer_id, at_ns = snapshot time or NULL, stored features) as the online path does:
    request-time features at `as_of`, feature age = as_of - snapshot, cold = no snapshot."""
    from features.compute import request_time_features

    now_s = pd.Timestamp(as_of).timestamp()
    n = len(rows)
    at_s = rows["at_ns"].to_numpy(dtype=np.float64, na_value=np.nan) / 1e9
    found = ~np.isnan(at_s)
    rt = request_time_features(rows, np.full(n, now_s))
    mats = {}
    for svc, cols in scorer._columns.items():
        mats[svc] = np.column_stack(
            [rt[c] if c in rt else rows[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in cols]
        ).reshape(n, len(cols))
    age = np.where(found, now_s - at_s, np.nan)
    batch = scorer.score_matrices(rows["customer_id"].tolist(), mats, ~found, age, offers, reasons=reasons)
    return batch.to_frame(as_of)


def score_to_parquet_spark(
    cfg: Config,
    as_of: pd.Timestamp,
    out: Path,
    customer_ids: Sequence[str] | None = None,
    offers: Sequence[str] | None = None,
    *,
    reasons: bool = True,
    champions: ChampionFiles | None = None,
) -> BatchResult:
    """`rebuy score --engine spark`: scores every customer on Spark into a Parquet directory at `out`."""

    from features.compute import FAMILIES
    from features.spark import AS_OF_SQL, PARTITION, SparkEngine, to_spark_sql
    from features.store import snapshot_dir

    t0 = time.perf_counter()
    as_of = pd.Timestamp(as_of).tz_convert("UTC")
    champions = champions or ChampionFiles.from_registry(cfg)
    driver_scorer = scorer_from_files(champions)  # validates the files before any Spark work
    eligible = driver_scorer.eligible(offers)
    ids = ids_to_score(cfg, customer_ids)
    root = snapshot_dir(cfg)
    if not any(root.glob(f"{PARTITION}=*")):
        raise DataError(
            f"no feature snapshots under {root}",
            hint='set [engine] compute = "spark" and run `rebuy features materialize` first',
        )
    engine = SparkEngine.shared(cfg.engine.spark)
    spark = engine.spark
    stored = [c for fam in FAMILIES.values() for c in fam]
    entity = pd.DataFrame({"eid": np.arange(len(ids)), "customer_id": ids, "c": np.int64(as_of.value)})
    sql = AS_OF_SQL.format(columns=", ".join(["e.customer_id", "l.at_ns", *(f"s.{c}" for c in stored)]))
    with engine._lock:
        engine.view("entity", entity)
        spark.read.parquet(str(root)).createOrReplaceTempView("snapshots")
        rows = spark.sql(to_spark_sql(sql)).drop("eid")
    schema = spark.createDataFrame(
        score_snapshot_rows(
            driver_scorer,
            pd.DataFrame([{"customer_id": "x", "at_ns": None}]).reindex(
                columns=["customer_id", "at_ns", *stored]
            ),
            as_of,
            eligible,
            reasons=reasons,
        )
    ).schema
    bc = spark.sparkContext.broadcast(champions)

    def score_partition(batches):
        scorer = scorer_from_files(bc.value)
        for part in batches:
            if len(part):
                yield score_snapshot_rows(scorer, part, as_of, eligible, reasons=reasons)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    try:
        # Spark writes a folder of its own: fill it beside `out` and swap it in whole
        swap_in_dir(
            out,
            lambda tmp: rows.mapInPandas(score_partition, schema).write.mode("overwrite").parquet(str(tmp)),
        )
        t2 = time.perf_counter()
    finally:
        bc.unpersist()
    summary = pd.read_parquet(out, columns=["cold_start"])
    return BatchResult(
        path=out,
        customers=len(summary),
        cold_start=int(summary["cold_start"].sum()),
        read_seconds=t1 - t0,
        model_seconds=t2 - t1,
        total_seconds=time.perf_counter() - t0,
        model_versions=driver_scorer.model_versions,
    )
