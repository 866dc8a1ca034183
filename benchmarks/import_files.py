"""Import benchmark: `rebuy import` of a large CSV export (orders + events), wall time and peak memory.

The export is written in a German shop-system dialect (`;`, decimal comma, dd.mm.yyyy, Europe/Berlin
naive times, ids with leading zeros, no order ids so they are derived), which exercises the slow paths:
locale numbers, per-value time zones, id hashing, and the contract's pandera checks on every row.

Run on demand: `.venv/bin/python benchmarks/import_files.py [--orders 500000] [--events 1000000]`.
Writes benchmarks/results/import_files.json and import_files.md. Measured on a 2-core machine shared
with other work, so times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rebuy.config import Config, DialectConfig, ImportConfig, TableSource
from rebuy.ingest import Sources, import_inputs
from rebuy.timeutil import telemetry_off

ROOT = Path(__file__).resolve().parents[1]


def write_export(folder: Path, n_orders: int, n_events: int, customers: int, seed: int) -> Sources:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01")
    ids = np.char.zfill(rng.integers(0, customers, n_orders).astype(str), 7)
    when = start + pd.to_timedelta(rng.integers(0, 700 * 86400, n_orders), unit="s")
    amount = rng.gamma(2.0, 25.0, n_orders).round(2)
    pd.DataFrame(
        {
            "Kunde": ids,
            "Zeitpunkt": when.strftime("%d.%m.%Y %H:%M"),
            "Betrag": [f"{a:.2f}".replace(".", ",") for a in amount],
        }
    ).to_csv(folder / "orders.csv", sep=";", index=False)
    eids = np.char.zfill(rng.integers(0, customers, n_events).astype(str), 7)
    ewhen = start + pd.to_timedelta(rng.integers(0, 700 * 86400, n_events), unit="s")
    pd.DataFrame(
        {
            "Kunde": eids,
            "Zeitpunkt": ewhen.strftime("%d.%m.%Y %H:%M"),
            "Ereignis": rng.choice(["seite", "warenkorb", "bestellungen", "lieferung"], n_events),
        }
    ).to_csv(folder / "events.csv", sep=";", index=False)
    return Sources(orders=folder / "orders.csv", events=folder / "events.csv")


def config(data_dir: Path) -> Config:
    cols = {"customer_id": "Kunde"}
    return Config.model_validate(
        {
            "paths": {"data_dir": data_dir},
            "import": ImportConfig(
                dialect=DialectConfig(
                    delimiter=";", decimal=",", date_format="%d.%m.%Y %H:%M", timezone="Europe/Berlin"
                ),
                orders=TableSource(columns={**cols, "ordered_at": "Zeitpunkt", "amount": "Betrag"}),
                events=TableSource(columns={**cols, "occurred_at": "Zeitpunkt", "event_type": "Ereignis"}),
                event_type_map={
                    "seite": "view",
                    "warenkorb": "cart",
                    "bestellungen": "order_history_view",
                    "lieferung": "delivery_check",
                },
            ),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=500_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    telemetry_off()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = write_export(folder, args.orders, args.events, args.customers, args.seed)
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        cfg = config(folder / "data")
        t0 = time.perf_counter()
        result = import_inputs(cfg, sources, pd.Timestamp("2026-01-01", tz="UTC"), progress=True)
        wall = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    out = {
        "orders": args.orders,
        "events": args.events,
        "customers": len(result.tables["customers"]),
        "csv_mib": round(mb, 1),
        "wall_s": round(wall, 1),
        "rows_per_s": int((args.orders + args.events) / wall),
        "peak_rss_gib": round(peak_gib, 2),
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "import_files.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "# rebuy import benchmark",
        "",
        f"Machine: {out['machine']}; 1-minute load average at the end: {out['load_avg_1m']}.",
        "",
        "| orders | events | CSV MiB | wall s | rows/s | peak RSS GiB |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {args.orders:,} | {args.events:,} | {out['csv_mib']} | {out['wall_s']} | {out['rows_per_s']:,} "
        f"| {out['peak_rss_gib']} |",
        "",
    ]
    (results / "import_files.md").write_text("\n".join(md))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
