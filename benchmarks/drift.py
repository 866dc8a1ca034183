"""Drift benchmark: false alarms without shift, detection per injected shift, report time at 100k rows.

For each seed a reference shop and an independent fresh shop (same size, same season, same cutoff)
are simulated; the fresh one is compared unchanged (a false alarm is any status other than ok —
drift is counted separately) and with each of the bars' shifts (order values +20 %, engagement
−30 %, new customers' share doubled), where detection means status drift. Then one Evidently report
is timed for 100k current rows (sampled down to `drift.current_sample` as in production).

Run on demand: `.venv/bin/python benchmarks/drift.py [--seeds 20] [--customers 6000]`.
Writes benchmarks/results/drift.json and drift.md. Measured on a 2-core machine shared with others.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
# the project root first: this script's own folder holds other benchmarks named like packages (features.py)
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "drift")]

from drift_shop import (  # noqa: E402
    double_new_customers,
    feature_rows,
    scale_order_values,
    shop_tables,
    thin_engagement,
)

from pipelines.drift import Roles, analyse, evidently_report, write_report  # noqa: E402
from rebuy.config import DriftConfig  # noqa: E402
from rebuy.timeutil import telemetry_off  # noqa: E402

CUTOFF = pd.Timestamp("2025-06-02", tz="UTC")
SHIFTS = ("order_values_+20%", "engagement_-30%", "new_customers_x2")


def monitored(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(c for c in frame.columns if c not in ("customer_id", "cutoff") and not c.endswith("_at"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--big", type=int, default=100_000, help="current rows for the timing run")
    args = parser.parse_args()
    telemetry_off()
    cfg = DriftConfig()
    outcomes: dict[str, list[str]] = {"none": [], **{s: [] for s in SHIFTS}}
    top: dict[str, list[str]] = {s: [] for s in SHIFTS}
    analyse_s: list[float] = []
    with Progress() as bar:
        task = bar.add_task("seeds", total=args.seeds)
        for seed in range(args.seeds):
            ref_t = shop_tables(args.customers, 1000 + seed, CUTOFF)
            cur_t = shop_tables(args.customers, 2000 + seed, CUTOFF)
            ref = feature_rows(ref_t, CUTOFF)
            roles = Roles(features=monitored(ref), timestamp="cutoff")
            currents = {
                "none": cur_t,
                SHIFTS[0]: scale_order_values(cur_t, 1.2),
                SHIFTS[1]: thin_engagement(cur_t, 0.7, seed),
                SHIFTS[2]: double_new_customers(cur_t, CUTOFF, seed),
            }
            for name, tables in currents.items():
                t0 = time.perf_counter()
                res = analyse("bench", ref, feature_rows(tables, CUTOFF), roles, cfg, CUTOFF)
                analyse_s.append(time.perf_counter() - t0)
                outcomes[name].append(res.status.level)
                if name in top:
                    top[name].append(str(res.table["column"].iloc[0]))
            bar.advance(task)

        # timing: 100k current rows -> sample -> analyse -> Evidently report -> files
        bar.add_task("100k-row report", total=None)
        ref_t = shop_tables(args.customers, 1, CUTOFF)
        ref = feature_rows(ref_t, CUTOFF)
        roles = Roles(features=monitored(ref), timestamp="cutoff")
        cur_small = feature_rows(shop_tables(args.customers, 2, CUTOFF), CUTOFF)
        reps = -(-args.big // len(cur_small))
        big = pd.concat([cur_small] * reps, ignore_index=True).head(args.big)
        t_imp = time.perf_counter()
        import evidently  # noqa: F401 - import once outside the timing: a long-running job pays it once

        t_import = time.perf_counter() - t_imp
        t0 = time.perf_counter()
        res = analyse("bench", ref, big, roles, cfg, CUTOFF)
        t_analyse = time.perf_counter() - t0
        snap = evidently_report(res, cfg)
        t_evidently = time.perf_counter() - t0 - t_analyse
        with tempfile.TemporaryDirectory() as tmp:
            write_report(res, snap, Path(tmp))
        t_total = time.perf_counter() - t0

    n = args.seeds
    result = {
        "machine": f"{platform.machine()}, 2 cores shared with other jobs, Python {platform.python_version()}",
        "seeds": n,
        "customers_per_shop": args.customers,
        "features": len(roles.features),
        "thresholds": {
            "warning_effect": cfg.warning_effect,
            "drift_effect": cfg.drift_effect,
            "noise_z": cfg.noise_z,
            "sample": cfg.current_sample,
        },
        "false_alarm_rate_not_ok": sum(s != "ok" for s in outcomes["none"]) / n,
        "false_drift_rate": sum(s == "drift" for s in outcomes["none"]) / n,
        "detection_rate": {s: sum(x == "drift" for x in outcomes[s]) / n for s in SHIFTS},
        "top_column": {s: pd.Series(top[s]).value_counts().to_dict() for s in SHIFTS},
        "analyse_seconds_median": float(np.median(analyse_s)),
        "report_100k": {
            "current_rows": len(big),
            "analyse_s": t_analyse,
            "evidently_s": t_evidently,
            "total_with_files_s": t_total,
        },
        "outcomes": outcomes,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = [
        "# drift benchmark",
        "",
        f"{result['machine']}; {n} seeds × {args.customers} customers per shop, {len(roles.features)} features.",
        "",
        "| measure | value | bar |",
        "|---|---|---|",
        f"| false alarms (status ≠ ok, no shift) | {result['false_alarm_rate_not_ok']:.0%} | ≤ 5% |",
        f"| false drift (status = drift, no shift) | {result['false_drift_rate']:.0%} | ≤ 5% |",
        *[f"| detection: {s} | {r:.0%} | ≥ 95% |" for s, r in result["detection_rate"].items()],
        f"| analyse one model (median) | {result['analyse_seconds_median']:.2f} s | |",
        f"| 100k current rows: analyse + Evidently + files | {t_total:.1f} s "
        f"(analyse {t_analyse:.1f}, Evidently {t_evidently:.1f}; Evidently import once {t_import:.0f} s) | |",
    ]
    (out / "drift.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
