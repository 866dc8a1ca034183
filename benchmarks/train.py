"""Training benchmark: wall time of `rebuy train all` with the default budget, and a quality table per model.

A shop is simulated (default 200,000 customers × 24 months), written as canonical tables, and trained
exactly as `rebuy train all` does (features.training_set through Feast, Optuna, MLflow, the gate), with
the simulator's truth API as the oracle on the same test rows. Then the same for orders-only data
(events removed). Per model: the model, the recency baseline, BG/NBD and the oracle (AUC, ECE), and for
the regressions MAE and Spearman against the realised label and of the truth API's expectation.

Bars (issue 5): churn and repurchase AUC ≥ 0.97 × oracle and above BG/NBD; ECE ≤ 0.02.

Run on demand: `.venv/bin/python benchmarks/train.py [--customers 200000] [--skip-orders-only]`.
Writes benchmarks/results/train[-<customers>].json and .md. Machine: 2 cores shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/features.py would shadow the `features` package when this script's folder is sys.path[0]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))


def run_one(customers: int, months: int, seed: int, events: bool, trials: int | None) -> dict[str, Any]:
    from rebuy.config import load_config
    from rebuy.contract import empty
    from rebuy.ingest import write_canonical
    from rebuy.simulator import ShopSimulator, SimConfig
    from training.run import quality_rows, simulator_oracle

    t0 = time.perf_counter()
    sim = ShopSimulator(SimConfig(customers=customers, months=months, seed=seed, events=events))
    tables = sim.run_history()
    if not events:
        tables["events"] = empty("events")
    sim_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="rebuy-bench-train-") as tmp:
        cfg = load_config(None, data_dir=Path(tmp))
        if trials is not None:
            opt = cfg.training.optuna.model_copy(update={"trials": trials})
            cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})
        write_canonical(tables, cfg.paths.data_dir)
        oracle_s = 0.0
        truth = simulator_oracle(sim)

        def timed_oracle(keys: pd.DataFrame, spec: Any) -> pd.DataFrame | None:
            nonlocal oracle_s
            t = time.perf_counter()
            try:
                return truth(keys, spec)
            finally:
                oracle_s += time.perf_counter() - t

        t1, c1 = time.perf_counter(), _cpu_seconds()
        load_before = os.getloadavg()
        runs, stages = train_all_timed(cfg, sim.now, timed_oracle)
        total, cpu = time.perf_counter() - t1, _cpu_seconds() - c1
        load_after = os.getloadavg()
    rows = quality_rows(runs)
    extra = {
        name: {
            "version": r.outcome.version,
            "promoted": r.outcome.promoted,
            "auc_ratio_to_oracle": r.result.metrics.get("auc_ratio_to_oracle"),
            "split": r.result.split_info,
            "tuning": {k: r.result.tuning[k] for k in ("n_trials", "n_complete", "n_pruned", "best_value")},
        }
        for name, r in runs.items()
    }
    return {
        "customers": customers,
        "months": months,
        "seed": seed,
        "events": events,
        "orders": len(tables["orders"]),
        "events_rows": len(tables["events"]),
        "simulate_s": round(sim_s, 1),
        "train_all_s": round(total - oracle_s, 1),
        "train_all_cpu_s": round(cpu, 1),  # oracle replay included (it runs in this process)
        "oracle_s": round(oracle_s, 1),
        # wall and CPU seconds per stage (the oracle replay is inside the per-model `train` stages)
        "stages": stages,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cutoffs": {name: r.result.split_info.get("test_start") for name, r in runs.items()},
        "quality": rows,
        "models": extra,
        "bars": bars(rows),
    }


def train_all_timed(
    cfg: Any, as_of: pd.Timestamp, oracle: Any
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """What `rebuy train all` runs (training.run.train_command), step by step, with wall and CPU per step."""
    from rebuy.ingest import read_canonical
    from training.run import ModelRun, known_services, train_specs, training_sets
    from training.specs import TRAIN_GROUPS
    from training.tracking import log_run

    stages: dict[str, dict[str, float]] = {}

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t, c = time.perf_counter(), _cpu_seconds()
        out = fn(*args, **kw)
        stages[name] = {"wall_s": round(time.perf_counter() - t, 1), "cpu_s": round(_cpu_seconds() - c, 1)}
        print(f"  {name}: {stages[name]}", flush=True)
        return out

    names = list(TRAIN_GROUPS["all"])
    services = known_services()
    tables = timed("read canonical tables", read_canonical, cfg.paths.data_dir)
    sets, grids = timed("feature snapshots + training sets", training_sets, cfg, names, tables, as_of)
    runs: dict[str, Any] = {}
    for name in names:
        res = timed(
            f"{name}: tune, fit, calibrate, evaluate",
            train_specs,
            cfg,
            [name],
            sets,
            services,
            oracle=oracle,
            register=False,
            grids=grids,
        )[name]
        runs[name] = ModelRun(res, timed(f"{name}: MLflow log + gate", log_run, cfg, res))
    return runs, stages


def _cpu_seconds() -> float:
    """CPU time of this process and its children: wall time alone misleads on a shared 2-core machine."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bars(rows: list[dict[str, Any]]) -> dict[str, bool]:
    by = {(r["model"], r["scorer"]): r for r in rows}
    out: dict[str, bool] = {}
    for m in ("churn", "repurchase"):
        model, bg, orc = by.get((m, "model")), by.get((m, "bgnbd")), by.get((m, "oracle"))
        if model and orc:
            out[f"{m}: AUC >= 0.97 x oracle"] = model["roc_auc"] >= 0.97 * orc["roc_auc"]
        if model and bg:
            out[f"{m}: AUC > BG/NBD"] = model["roc_auc"] > bg["roc_auc"]
        if model:
            out[f"{m}: ECE <= 0.02"] = model["ece"] <= 0.02
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Training benchmark",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other work; "
        "LightGBM num_threads=1. Default Optuna budget unless stated.",
        "",
    ]
    for res in results:
        kind = "with events" if res["events"] else "orders only"
        lines += [
            f"## {res['customers']:,} customers × {res['months']} months, {kind}",
            "",
            f"`rebuy train all`: **{res['train_all_s']} s** wall (oracle replay {res['oracle_s']} s excluded; "
            f"simulation {res['simulate_s']} s; {res['orders']:,} orders, {res['events_rows']:,} events); "
            f"CPU {res.get('train_all_cpu_s', '?')} s incl. the oracle; load average (1/5/15 min) "
            f"{res.get('load_average_before')} before, {res.get('load_average_after')} after",
            "",
            "| model | scorer | ROC AUC | ECE | PR AUC | MAE | RMSE | Spearman |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in res["quality"]:
            cells = [r.get(k) for k in ("roc_auc", "ece", "pr_auc", "mae", "rmse", "spearman")]
            lines.append(
                f"| {r['model']} | {r['scorer']} | "
                + " | ".join("" if c is None else f"{c:.4f}" for c in cells)
                + " |"
            )
        if res.get("stages"):
            lines += ["", "| stage | wall s | CPU s |", "|---|---|---|"] + [
                f"| {k} | {v['wall_s']} | {v['cpu_s']} |" for k, v in res["stages"].items()
            ]
        lines += ["", "| bar | met |", "|---|---|"] + [
            f"| {k} | {'yes' if v else '**no**'} |" for k, v in res["bars"].items()
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from rebuy.timeutil import telemetry_off

    telemetry_off()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trials", type=int, default=None, help="override the Optuna trial budget")
    ap.add_argument("--skip-orders-only", action="store_true")
    ap.add_argument(
        "--only",
        choices=("events", "orders"),
        default=None,
        help="run one kind of shop (written to its own result files, so both can run side by side)",
    )
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "train" if args.customers == 200_000 else f"train-{args.customers}"
    kinds = [True] if args.skip_orders_only else [True, False]
    if args.only is not None:
        kinds = [args.only == "events"]
        stem += "-with-events" if args.only == "events" else "-orders-only"
    results: list[dict[str, Any]] = []
    md = ""
    for events in kinds:
        results.append(run_one(args.customers, args.months, args.seed, events, args.trials))
        # written after each run, so a long orders-only run never loses the first table
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        md = markdown(results)
        (out / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
