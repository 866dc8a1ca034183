"""Spark as the compute engine: one shared SparkSession per process and the feature SQL transpiled to it.

The feature families are DuckDB SQL (features.compute); SQLGlot turns each statement into Spark SQL
once per process (cached), and the named input frames are staged as Parquet and read as temporary
views, so Spark reads them in parallel splits instead of through the driver's Py4J socket. Local
mode (`local[2]`) proves correctness and gives real figures; a cluster is another `spark.master`.
Starting the JVM costs seconds, so every caller shares `session()`.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rebuy.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOCK = threading.Lock()
_SESSION: SparkSession | None = None
_ENGINE: SparkEngine | None = None


def spark_available() -> bool:
    """pyspark is an optional dependency group (`uv sync --group spark`, or make with compute = "spark")."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return True


def _require_pyspark() -> None:
    if not spark_available():
        raise RuntimeError(
            "[engine] compute = 'spark' needs pyspark, which is not installed; "
            "run `REBUY_TEST_INFRA=1 make install` (or `uv sync --group spark`)"
        )


def session_conf(settings: SparkConfig, local_dir: Path) -> dict[str, str]:
    """The session's settings: loopback only, UTC, Arrow transfers, no UI, small shuffles for one machine."""
    conf = {
        "spark.master": settings.master,
        "spark.app.name": "rebuy",
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.local.dir": str(local_dir / "spill"),
        "spark.sql.warehouse.dir": str(local_dir / "warehouse"),
    }
    conf.update(settings.conf)
    return conf


def session(settings: SparkConfig | None = None) -> SparkSession:
    """The process's SparkSession, started on first use with `settings` (later settings are ignored)."""
    global _SESSION
    _require_pyspark()
    with _LOCK:
        if _SESSION is not None:
            return _SESSION
        from pyspark.sql import SparkSession

        settings = settings or SparkConfig()
        base = (
            Path(settings.local_dir) if settings.local_dir else Path(tempfile.mkdtemp(prefix="rebuy-spark-"))
        )
        base.mkdir(parents=True, exist_ok=True)
        # executors' Python workers must be this interpreter (the venv with lightgbm, pandas, pyarrow)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder
        for key, value in session_conf(settings, base).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        _SESSION = spark
        if not settings.local_dir:
            atexit.register(shutil.rmtree, base, True)
        return spark


def stop() -> None:
    """Stop the shared session (tests' teardown; a process otherwise keeps it until exit)."""
    global _SESSION, _ENGINE
    with _LOCK:
        if _ENGINE is not None:
            _ENGINE.close()
            _ENGINE = None
        if _SESSION is not None:
            _SESSION.stop()
            _SESSION = None


def _decimal_literals_as_double(node: Any) -> Any:
    """`1.0` is DECIMAL in both dialects, but DuckDB's avg() of a DECIMAL is a DOUBLE while Spark's is a
    DECIMAL rounded to 4 more digits (a share of 1/3 would come back as 0.33333): fractional literals
    become DOUBLE so both engines compute in binary floating point."""
    from sqlglot import exp

    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if "." in text and "e" not in text.lower():
            return exp.cast(node, exp.DataType.build("DOUBLE"))
    return node


@functools.lru_cache(maxsize=256)
def to_spark_sql(sql: str) -> str:
    """One DuckDB-dialect statement as Spark SQL (SQLGlot); raises when SQLGlot cannot express it."""
    import sqlglot

    trees = sqlglot.parse(sql, read="duckdb")
    if len(trees) != 1 or trees[0] is None:
        raise ValueError(f"expected one SQL statement, got {len(trees)}")
    tree = trees[0].transform(_decimal_literals_as_double)
    return tree.sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)


class SparkEngine:
    """Runs the feature SQL on Spark: frames staged as Parquet temp views, results back through Arrow.

    A frame is staged once per object and name, so the families of one computation (which share the
    encoded inputs) read one staged copy.
    """

    name = "spark"
    _ids = itertools.count()

    def __init__(self, spark: SparkSession, staging: Path | None = None):
        self.spark = spark
        self.staging = staging or Path(tempfile.mkdtemp(prefix="rebuy-spark-stage-"))
        self._staged: dict[str, tuple[Any, Path]] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, settings: SparkConfig | None = None) -> SparkEngine:
        """The process's engine on the shared session."""
        global _ENGINE
        spark = session(settings)
        with _LOCK:
            if _ENGINE is None or _ENGINE.spark is not spark:
                _ENGINE = cls(spark)
            return _ENGINE

    def view(self, name: str, df: pd.DataFrame) -> None:
        """Make `df` the temp view `name` (staged as Parquet unless this very frame already is)."""
        kept = self._staged.get(name)
        if kept is not None and kept[0] is df:
            return
        path = self.staging / f"{name}-{next(self._ids)}.parquet"
        df.to_parquet(path, index=False)
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)
        self._staged[name] = (df, path)
        if kept is not None:
            kept[1].unlink(missing_ok=True)

    def query(self, sql: str, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        with self._lock:  # temp views are per session: one query's frames at a time
            for name, df in frames.items():
                self.view(name, df)
            return self.spark.sql(to_spark_sql(sql)).toPandas()

    def close(self) -> None:
        for name in list(self._staged):
            self.spark.catalog.dropTempView(name)
        self._staged.clear()
        shutil.rmtree(self.staging, ignore_errors=True)


# --- offline snapshots and point-in-time joins -------------------------------------------------------

PARTITION = "cutoff_ns"  # snapshots are partitioned by their cutoff (ns since the epoch, UTC)


def write_snapshots(root: Path, features: pd.DataFrame) -> dict[int, int]:
    """Feature snapshots (customer_id, cutoff, features...) as Parquet partitioned by cutoff.

    A partition `cutoff_ns=<ns>` holds one cutoff; writing a cutoff again replaces its partition whole
    (staged beside it, then renamed), others are kept. Returns rows written per cutoff.
    """
    from features.sqlbase import _ns

    root.mkdir(parents=True, exist_ok=True)
    ns = _ns(features["cutoff"])
    snap = features.drop(columns=["cutoff"]).assign(**{PARTITION: ns})
    written: dict[int, int] = {}
    for value, part in snap.groupby(PARTITION, sort=True):
        cut = int(str(value))
        final = root / f"{PARTITION}={cut}"
        tmp = root / f".{final.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        part.drop(columns=[PARTITION]).sort_values("customer_id", kind="stable").to_parquet(
            tmp / "part-0.parquet", index=False
        )
        old = root / f".{final.name}.{os.getpid()}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        written[cut] = len(part)
    return written


def forget_snapshots(root: Path, customer_ids: set[str]) -> None:
    """Drop the customers' rows from every snapshot partition (each file rewritten atomically)."""
    for path in sorted(root.glob(f"{PARTITION}=*/*.parquet")):
        df = pd.read_parquet(path)
        keep = ~df["customer_id"].isin(customer_ids)
        if not keep.all():
            tmp = path.with_suffix(".parquet.tmp")
            df.loc[keep].to_parquet(tmp, index=False)
            os.replace(tmp, path)


# The as-of join, in the features' dialect: for each (customer, cutoff) the latest snapshot at or
# before the cutoff (Feast's semantics with ttl=0), missing when the customer has none.
AS_OF_SQL = """
WITH latest AS (
    SELECT e.eid, max(s.cutoff_ns) AS at_ns
    FROM entity e JOIN snapshots s ON s.customer_id = e.customer_id AND s.cutoff_ns <= e.c
    GROUP BY e.eid
)
SELECT e.eid, {columns}
FROM entity e LEFT JOIN latest l ON l.eid = e.eid
    LEFT JOIN snapshots s ON s.customer_id = e.customer_id AND s.cutoff_ns = l.at_ns
"""


def point_in_time(engine: SparkEngine, root: Path, pairs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Stored snapshot features as of each (customer_id, cutoff) pair, in the pairs' order, on Spark."""
    from features.sqlbase import _ns

    if not any(root.glob(f"{PARTITION}=*")):
        raise FileNotFoundError(f"no feature snapshots under {root}; build them first (rebuy features build)")
    entity = pd.DataFrame(
        {
            "eid": range(len(pairs)),
            "customer_id": pairs["customer_id"].astype(str).to_numpy(),
            "c": _ns(pairs["cutoff"]),
        }
    )
    sql = AS_OF_SQL.format(columns=", ".join(f"s.{c}" for c in columns))
    with engine._lock:
        engine.spark.read.parquet(str(root)).createOrReplaceTempView("snapshots")
    got = engine.query(sql, {"entity": entity}).set_index("eid").reindex(range(len(pairs)))
    out = pairs[["customer_id", "cutoff"]].reset_index(drop=True).copy()
    for col in columns:
        out[col] = got[col].to_numpy(dtype="float64", na_value=float("nan"))
    return out
