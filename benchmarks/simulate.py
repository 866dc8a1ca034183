"""Benchmark: simulate 100k customers x 24 months with events and the weekly newsletter; wall time and peak memory.

The newsletter (SimConfig default, weekly) adds millions of `messages` rows (Arrow strings, categoricals).

Bars (issue 3): <= 60 s and <= 4 GiB on the project's 2-core machine. Run on demand:
`.venv/bin/python benchmarks/simulate.py [--customers N] [--months M]`; writes
benchmarks/results/simulate.json and simulate.md. The machine is usually shared, so CPU time is
reported beside wall time (wall time is what the bar is about).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BAR_SECONDS = 60.0
BAR_GIB = 4.0


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rebuy.simulator import ShopSimulator, SimConfig

    console = Console(stderr=True)
    t0, c0 = time.perf_counter(), time.process_time()
    sim = ShopSimulator(SimConfig(customers=args.customers, months=args.months, seed=args.seed, events=True))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"simulating {args.customers:,} customers", total=sim.config.days)
        tables = sim.run_history(progress=lambda done, total: bar.update(task, completed=done))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB
    load = os.getloadavg()
    result: dict[str, object] = {
        "benchmark": "simulate",
        "customers": args.customers,
        "months": args.months,
        "events": True,
        "newsletter_every_days": sim.config.newsletter_every_days,
        "rows": {k: len(v) for k, v in tables.items()},
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_gib": round(peak_gib, 2),
        "bar_seconds": BAR_SECONDS,
        "bar_gib": BAR_GIB,
        "within_bars": wall <= BAR_SECONDS and peak_gib <= BAR_GIB,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_average_1_5_15": [round(x, 1) for x in load],
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "simulate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = result["rows"]
    assert isinstance(rows, dict)
    md = [
        "# Simulator benchmark",
        "",
        f"{args.customers:,} customers x {args.months} months with events, seed {args.seed}; "
        f"machine: {result['machine']}; load average at the end {load[0]:.1f} (shared machine).",
        "",
        "| measure | value | bar |",
        "|---|---|---|",
        f"| wall time | {wall:.1f} s | <= {BAR_SECONDS:.0f} s |",
        f"| CPU time | {cpu:.1f} s | |",
        f"| peak memory (RSS) | {peak_gib:.2f} GiB | <= {BAR_GIB:.0f} GiB |",
        *(f"| rows: {k} | {v:,} | |" for k, v in rows.items()),
        "",
    ]
    (RESULTS / "simulate.md").write_text("\n".join(md), encoding="utf-8")
    console.print("\n".join(md))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["within_bars"] else 1)
