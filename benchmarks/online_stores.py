"""Online stores side by side in one run: write (customers/s, rebuy's write path) and one-customer read
p50 (serving's OnlineStoreReader) for the embedded SQLite store and Redis (127.0.0.1:6379, a namespace of
its own, deleted afterwards). Random float features in the shipped feature views' layout.

    .venv/bin/python benchmarks/online_stores.py --customers 20000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from rebuy.timeutil import telemetry_off

    telemetry_off()
    import redis

    from features.online import OnlineStoreReader
    from features.online_store import write_features
    from features.store import apply
    from rebuy.config import Config, PathsConfig, StoresConfig

    ns = "bench" + secrets.token_hex(4)
    services = ["churn_v1", "repurchase_v1", "value_v1", "offer_v1"]
    res: dict[str, object] = {"customers": args.customers, "load": os.getloadavg()}
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sqlite", "redis"):
            stores = StoresConfig(namespace=ns, online_store="sqlite" if kind == "sqlite" else args.redis)
            cfg = Config(paths=PathsConfig(data_dir=Path(tmp) / kind), stores=stores)
            store = apply(cfg)
            names = [f.name for v in store.list_feature_views() for f in v.features]
            ids = [f"c{i:07d}" for i in range(args.customers)]
            df = pd.DataFrame(rng.normal(size=(len(ids), len(names))), columns=names)
            df.iloc[::7, 3] = np.nan
            df.insert(0, "customer_id", ids)
            df.insert(1, "cutoff", pd.Timestamp("2025-06-01", tz="UTC"))
            t0 = time.perf_counter()
            write_features(store, df)
            res[f"{kind}_write_customers_per_s"] = round(len(ids) / (time.perf_counter() - t0))
            reader = OnlineStoreReader(cfg, services)
            now = pd.Timestamp("2025-06-02", tz="UTC")
            lat = []
            for i in rng.integers(0, len(ids), args.reads):
                t0 = time.perf_counter()
                reader.read_all(services, [ids[i]], now)
                lat.append(time.perf_counter() - t0)
            reader.close()
            res[f"{kind}_read_p50_ms"] = round(float(np.median(lat)) * 1e3, 3)
            res["features"] = len(names)
    c = redis.Redis.from_url(args.redis)
    keys = list(c.scan_iter(match=f"*rebuy_{ns}*".encode(), count=1000))
    for i in range(0, len(keys), 1000):
        c.delete(*keys[i : i + 1000])
    res["load_after"] = os.getloadavg()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "online_stores.json").write_text(json.dumps(res, indent=2))
    md = [
        f"# Online stores ({res['customers']:,} customers x {res['features']} features; load {res['load']})",
        "",
        "| store | write customers/s | one-customer read p50 (ms, all 4 services) |",
        "|---|---|---|",
        *(
            f"| {k} | {res[f'{k}_write_customers_per_s']:,} | {res[f'{k}_read_p50_ms']} |"
            for k in ("sqlite", "redis")
        ),
    ]
    (out / "online_stores.md").write_text("\n".join(md) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
