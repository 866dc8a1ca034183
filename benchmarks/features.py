"""Feature benchmark: compute at scale, materialization rate, online read latency, push latency, historical retrieval.

Run on demand (not in tests):  .venv/bin/python benchmarks/features.py [--customers 1000000 --events 20000000]
Synthetic input is generated here (vectorised numpy), shaped like the canonical tables. Results are
printed and saved as JSON + a markdown table under benchmarks/results/. Machine: 2 cores, shared.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

RESULTS = Path(__file__).parent / "results"
START = pd.Timestamp("2024-01-01", tz="UTC")
console = Console(stderr=True)


def synthetic_shop(n_customers: int, n_events: int, n_orders: int, days: int, seed: int = 1) -> dict:
    """Canonical-form tables: skewed activity (a few customers do most), 24 months by default."""
    from rebuy.contract import empty

    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:07d}" for i in range(n_customers)], dtype=object)
    signup_s = rng.uniform(0, days * 0.8, n_customers) * 86400
    weights = rng.pareto(1.5, n_customers) + 0.1
    weights /= weights.sum()

    def stamps(who: np.ndarray) -> pd.DatetimeIndex:
        offset = signup_s[who] + rng.uniform(0, 1, len(who)) * (days * 86400 - signup_s[who])
        return pd.DatetimeIndex(START + pd.to_timedelta(offset.astype(np.int64), unit="s")).as_unit("ns")

    cats = np.array(["shoes", "bags", "tea", "toys", "books", "garden"], dtype=object)
    customers = pd.DataFrame(
        {"customer_id": ids, "signup_at": START + pd.to_timedelta(signup_s.astype(np.int64), unit="s")}
    )
    customers["signup_at"] = customers["signup_at"].dt.as_unit("ns")
    who = rng.choice(n_customers, n_orders, p=weights)
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("o", np.arange(n_orders).astype(str)).astype(object),
            "customer_id": ids[who],
            "ordered_at": stamps(who),
            "amount": rng.lognormal(3.5, 0.8, n_orders),
            "category": cats[rng.integers(0, len(cats), n_orders)],
            "discount": np.where(rng.random(n_orders) < 0.3, 5.0, 0.0),
            "items": 1,
            "returned_amount": 0.0,
        }
    )
    who = rng.choice(n_customers, n_events, p=weights)
    kinds = np.array(
        ["view"] * 5
        + [
            "cart",
            "order_history_view",
            "delivery_check",
            "email_open",
            "email_click",
            "push_open",
            "app_open",
        ],
        dtype=object,
    )
    events = pd.DataFrame(
        {
            "customer_id": ids[who],
            "occurred_at": stamps(who),
            "event_type": kinds[rng.integers(0, len(kinds), n_events)],
            "category": cats[rng.integers(0, len(cats), n_events)],
        }
    )
    return {
        "customers": customers,
        "orders": orders,
        "events": events,
        "consent_updates": empty("consent_updates"),
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _descendants() -> list[int]:
    """Pids of this process's descendants (the Spark JVM and its Python workers), from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [os.getpid()]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parent.items() if p == pid]
        out += kids
        frontier += kids
    return out


def children_usage() -> tuple[float, float]:
    """(CPU seconds, largest peak RSS in GiB) of the live descendants: the JVM is not this process."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, hwm = 0.0, 0.0
    for pid in _descendants():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]) / 1024**2)
    return cpu, hwm


def spark_compute(tables: dict, as_of: pd.Timestamp, duck: pd.DataFrame, master: str) -> dict[str, object]:
    """The same computation on Spark (one local session), measured beside DuckDB's, with a parity check."""
    from features import spark
    from features.compute import compute_features
    from rebuy.config import SparkConfig

    out: dict[str, object] = {"spark_master": master}
    t0 = time.perf_counter()
    engine = spark.SparkEngine.shared(SparkConfig(master=master, driver_memory="12g", shuffle_partitions=8))
    out["spark_session_start_seconds"] = round(time.perf_counter() - t0, 2)
    gc.collect()
    jvm_cpu0, _ = children_usage()
    t0, c0 = time.perf_counter(), time.process_time()
    feats = compute_features(tables, [as_of], con=engine)
    out["spark_compute_seconds"] = round(time.perf_counter() - t0, 2)
    jvm_cpu1, jvm_hwm = children_usage()
    out["spark_compute_cpu_seconds_driver_python"] = round(time.process_time() - c0, 2)
    out["spark_compute_cpu_seconds_jvm"] = round(jvm_cpu1 - jvm_cpu0, 2)
    out["spark_jvm_peak_rss_gib"] = round(jvm_hwm, 2)
    out["spark_python_peak_rss_gib"] = round(peak_rss_gib(), 2)
    out["load_average_1min_at_spark_compute"] = round(os.getloadavg()[0], 1)
    same_ids = feats["customer_id"].tolist() == duck["customer_id"].tolist()
    diff = np.nanmax(np.abs(feats.iloc[:, 2:].to_numpy(np.float64) - duck.iloc[:, 2:].to_numpy(np.float64)))
    nan_same = bool((feats.iloc[:, 2:].isna().to_numpy() == duck.iloc[:, 2:].isna().to_numpy()).all())
    out["spark_parity_max_abs_diff"] = float(diff)
    out["spark_parity_ids_and_nan_equal"] = bool(same_ids and nan_same)
    console.print(
        f"spark compute: {out['spark_compute_seconds']} s wall, JVM {out['spark_compute_cpu_seconds_jvm']} CPU s, "
        f"JVM peak RSS {out['spark_jvm_peak_rss_gib']} GiB, max |spark - duckdb| {diff:.3g}"
    )
    spark.stop()
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--orders", type=int, default=3_000_000)
    parser.add_argument(
        "--materialize", type=int, default=200_000, help="customers written to the online store"
    )
    parser.add_argument("--historical-rows", type=int, default=1_000_000)
    parser.add_argument("--stores", default="duckdb,file")
    parser.add_argument("--name", default="features")
    parser.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default="duckdb",
        help="spark: also compute on Spark (same data, same run) and report it beside DuckDB",
    )
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument(
        "--parts",
        default="compute,materialize,read,push,historical",
        help="'historical' can be left out (the slowest part); the others build on each other",
    )
    args = parser.parse_args()
    # this file is named features.py: drop its own folder from the path so `features` is the package
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.modules.pop("features", None)

    from rebuy.timeutil import telemetry_off

    telemetry_off()
    warnings.filterwarnings("ignore")
    from features.compute import compute_features, customer_pairs, epoch_seconds
    from features.online import OnlineFeatureReader
    from features.online_store import write_features
    from features.store import FeaturePusher, apply, feature_store, write_offline
    from rebuy.config import Config, FeaturesConfig, PathsConfig

    days = 730
    as_of = START + pd.Timedelta(days=days)
    res: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "customers": args.customers,
        "events": args.events,
        "orders": args.orders,
    }
    console.print(
        f"generating {args.customers:,} customers / {args.events:,} events / {args.orders:,} orders"
    )
    tables = synthetic_shop(args.customers, args.events, args.orders, days)
    rss_data = peak_rss_gib()
    gc.collect()

    # 1. feature computation, all families, every customer as of one time
    t0, c0 = time.perf_counter(), time.process_time()
    feats = compute_features(tables, [as_of])
    res["compute_seconds"] = round(time.perf_counter() - t0, 2)
    # CPU seconds of this process (all threads): on a shared machine the wall time above includes waiting
    res["compute_cpu_seconds"] = round(time.process_time() - c0, 2)
    res["load_average_1min_at_compute"] = round(os.getloadavg()[0], 1)
    res["compute_rows"] = len(feats)
    res["peak_rss_gib_after_data"] = round(rss_data, 2)
    res["peak_rss_gib_after_compute"] = round(peak_rss_gib(), 2)
    console.print(
        f"compute: {res['compute_seconds']} s ({res['compute_cpu_seconds']} CPU s), peak RSS {res['peak_rss_gib_after_compute']} GiB"
    )

    if args.engine == "spark":
        res.update(spark_compute(tables, as_of, feats, args.spark_master))
    parts = set(args.parts.split(","))
    if parts == {"compute"}:
        _save(args.name, res)
        return
    tmp = Path(tempfile.mkdtemp(prefix="rebuy-bench-"))
    try:
        cfg = Config(paths=PathsConfig(data_dir=tmp / "data"))
        store = apply(cfg)
        # 2. materialization into the online store (bulk path), full feature set
        part = feats.iloc[: args.materialize]
        t0, c0 = time.perf_counter(), time.process_time()
        write_features(store, part)
        dt = time.perf_counter() - t0
        res["materialize_customers_per_s"] = round(len(part) / dt)
        res["materialize_customers_per_cpu_s"] = round(len(part) / max(time.process_time() - c0, 1e-9))
        res["materialize_n_features"] = sum(len(v.features) for v in store.list_feature_views())
        # the same rows through Feast's write_to_online_store (batched rebuy store), for comparison
        small = part.iloc[:5000].rename(columns={"cutoff": "event_timestamp"})
        t0 = time.perf_counter()
        for view in store.list_feature_views():
            cols = ["customer_id", "event_timestamp", *[f.name for f in view.features]]
            store.write_to_online_store(view.name, small[cols])
        res["feast_write_to_online_store_customers_per_s"] = round(len(small) / (time.perf_counter() - t0))
        console.print(
            f"materialize: {res['materialize_customers_per_s']:,} customers/s (bulk), "
            f"{res['feast_write_to_online_store_customers_per_s']:,}/s via write_to_online_store"
        )

        # 3. online read of one customer's FeatureService
        reader = OnlineFeatureReader(cfg, "offer_v1")
        rng = np.random.default_rng(2)
        ids = part["customer_id"].to_numpy()
        lat = []
        for cid in rng.choice(ids, 3000):
            t0 = time.perf_counter()
            reader.read([cid], as_of)
            lat.append(time.perf_counter() - t0)
        res["online_read_1_p50_ms"], res["online_read_1_p99_ms"] = (
            round(pct(lat[500:], 50), 3),
            round(pct(lat[500:], 99), 3),
        )
        lat = []
        for _ in range(200):
            batch = list(rng.choice(ids, 100))
            t0 = time.perf_counter()
            reader.read(batch, as_of)
            lat.append(time.perf_counter() - t0)
        res["online_read_100_p50_ms"] = round(pct(lat, 50), 3)
        fs = feature_store(cfg)
        service = fs.get_feature_service("offer_v1")
        lat = []
        for cid in rng.choice(ids, 300):
            t0 = time.perf_counter()
            fs.get_online_features(features=service, entity_rows=[{"customer_id": cid, "request_ts": 1.0}])
            lat.append(time.perf_counter() - t0)
        res["feast_get_online_features_1_p50_ms"] = round(pct(lat[50:], 50), 3)
        res["feast_get_online_features_1_p99_ms"] = round(pct(lat[50:], 99), 3)
        console.print(
            f"online read: p50 {res['online_read_1_p50_ms']} ms, p99 {res['online_read_1_p99_ms']} ms "
            f"(Feast get_online_features p50 {res['feast_get_online_features_1_p50_ms']} ms)"
        )

        # 4. push latency: a new view -> visible in the reader (history = the whole synthetic shop),
        # through a long-lived FeaturePusher as serving/the orchestrator would hold one
        pusher = FeaturePusher(cfg, history=tables)
        lat_push = []
        for i, cid in enumerate(rng.choice(ids, 20)):
            now = as_of + pd.Timedelta(minutes=i + 1)
            ev = pd.DataFrame(
                {"customer_id": [cid], "occurred_at": [now], "event_type": ["view"], "category": ["tea"]}
            )
            ev["occurred_at"] = ev["occurred_at"].dt.as_unit("ns")
            t0 = time.perf_counter()
            pusher.push({"events": ev}, now)
            assert reader.read([cid], now)[2][0] == 0.0  # the pushed snapshot is the one read
            lat_push.append(time.perf_counter() - t0)
        res["push_to_online_p50_ms"] = round(pct(lat_push, 50), 1)
        res["push_to_online_max_ms"] = round(max(lat_push) * 1000, 1)
        pusher.close()
        console.print(f"push: p50 {res['push_to_online_p50_ms']} ms (event -> online read)")
        reader.close()
        del feats, part
        gc.collect()

        # 5. historical retrieval of a training set per offline store
        if "historical" in parts:
            n_cut = 4
            n_cust = max(1, args.historical_rows // n_cut)
            cuts = [as_of - pd.Timedelta(days=30 * k) for k in range(n_cut)]
            sub = {k: v for k, v in tables.items()}
            keep = set(tables["customers"]["customer_id"].iloc[:n_cust])
            for k in ("customers", "orders", "events"):
                sub[k] = tables[k].loc[tables[k]["customer_id"].isin(keep)]
            pairs = customer_pairs(sub["customers"], cuts)
            snap = compute_features(sub, pairs)
            for kind in args.stores.split(","):
                cfg_k = Config(
                    paths=PathsConfig(data_dir=tmp / f"hist-{kind}"),
                    features=FeaturesConfig(offline_store=kind),
                )  # type: ignore[arg-type]
                store_k = apply(cfg_k)
                write_offline(cfg_k, snap)
                ent = pd.DataFrame(
                    {
                        "customer_id": pairs["customer_id"],
                        "event_timestamp": pairs["cutoff"],
                        "request_ts": epoch_seconds(pairs["cutoff"]),
                    }
                )
                # warm-up on 10 rows: first-use imports (ibis, dask) are not retrieval time; errors show below
                with contextlib.suppress(Exception):
                    store_k.get_historical_features(
                        entity_df=ent.head(10), features=store_k.get_feature_service("offer_v1")
                    ).to_df()
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    out = store_k.get_historical_features(
                        entity_df=ent, features=store_k.get_feature_service("offer_v1")
                    ).to_df()
                    res[f"historical_{kind}_seconds"] = round(time.perf_counter() - t0, 2)
                    res[f"historical_{kind}_cpu_seconds"] = round(time.process_time() - c0, 2)
                    res[f"historical_{kind}_rows"] = len(out)
                except Exception as exc:  # a store that cannot do it is a result too
                    res[f"historical_{kind}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                console.print(
                    f"historical {kind}: {res.get(f'historical_{kind}_seconds')} s for {len(ent):,} rows"
                )
                gc.collect()
        res["peak_rss_gib_total"] = round(peak_rss_gib(), 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    _save(args.name, res)


def _save(name: str, res: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in res.items()]
    (RESULTS / f"{name}.md").write_text(
        f"# features benchmark\n\nMachine: {res['machine']}. Bars: compute 1M customers / 20M events <= 60 s and "
        "<= 8 GiB; materialization >= 5k customers/s; online read p50 ~1 ms.\n\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
