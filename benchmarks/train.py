"""Training benchmark: `rebuy train all` on simulated shops, with the one quality table per model and seed.

Shops are simulated (default 20,000 customers × 24 months, with events, seeds fixed before looking), written
as canonical tables, and trained exactly as `rebuy train all` does (features.training_set through Feast,
Optuna with a trials budget, MLflow, the gate). Per model and seed, on the same test rows: the model, the
recency baseline, BG/NBD, the observable ceiling, the trait ceiling and the oracle (training.yardstick). The
ceilings are fit once, on independent shops (`--ceiling-seeds`, two seeds = twice a benchmark shop's data,
same dates), to the oracle's truth, and scored on every benchmark shop's test rows; the ceiling fit on one
of those shops only is scored too (convergence check: 1x -> 2x data should move the AUC by < 0.005).

Bars (issue 18): churn and repurchase AUC ≥ 0.97 × observable ceiling; ECE ≤ 0.02; above recency and BG/NBD
on every seed; the observable ceiling's share of the oracle AUC is reported (goal ≥ 0.93), and the group
ceilings (features + hidden state, features + hidden traits) say which hidden part the features miss.

Run on demand: `.venv/bin/python benchmarks/train.py [--customers 20000] [--seeds 7 8 9] [--trials 20]`.
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


def run_one(
    customers: int,
    months: int,
    seed: int,
    events: bool,
    trials: int | None,
    yardstick: Any = None,
    models: tuple[str, ...] = ("churn", "repurchase", "days_to_next", "value"),
) -> dict[str, Any]:
    from rebuy.config import load_config
    from rebuy.contract import empty
    from rebuy.ingest import write_canonical
    from rebuy.simulator import ShopSimulator, SimConfig
    from training.run import quality_rows, simulator_oracle
    from training.yardstick import simulator_hidden

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
        ceilings = None if yardstick is None else yardstick.for_shop(simulator_hidden(sim)).predict
        runs, stages = train_all_timed(cfg, sim.now, timed_oracle, ceilings, models)
        total, cpu = time.perf_counter() - t1, _cpu_seconds() - c1
        load_after = os.getloadavg()
    rows = quality_rows(runs)
    extra = {
        name: {
            "version": r.outcome.version,
            "promoted": r.outcome.promoted,
            **{
                k: v
                for k, v in r.result.metrics.items()
                if k.startswith("auc_ratio_to")
                or k.endswith("share_of_oracle")
                or k.startswith("ceiling_conv")
            },
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
        "trials": cfg.training.optuna.trials,
        "quality_by_model": {name: r.result.quality for name, r in runs.items()},
        "bars": bars(rows),
    }


def train_all_timed(
    cfg: Any,
    as_of: pd.Timestamp,
    oracle: Any,
    ceilings: Any = None,
    models: tuple[str, ...] = ("churn", "repurchase", "days_to_next", "value"),
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

    names = [n for n in TRAIN_GROUPS["all"] if n in models]
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
            ceilings=ceilings,
        )[name]
        runs[name] = ModelRun(res, timed(f"{name}: MLflow log + gate", log_run, cfg, res))
    return runs, stages


def _cpu_seconds() -> float:
    """CPU time of this process and its children: wall time alone misleads on a shared 2-core machine."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bars(rows: list[dict[str, Any]], models: dict[str, Any] | None = None) -> dict[str, bool]:
    by = {(r["model"], r["scorer"]): r for r in rows}
    out: dict[str, bool] = {}
    for m in ("churn", "repurchase"):
        model, orc = by.get((m, "model")), by.get((m, "oracle"))
        ceil = by.get((m, "observable_ceiling"))
        if model and ceil:
            out[f"{m}: AUC >= 0.97 x observable ceiling"] = model["roc_auc"] >= 0.97 * ceil["roc_auc"]
        for base, label in (("recency", "recency"), ("bgnbd", "BG/NBD")):
            if model and by.get((m, base)):
                out[f"{m}: AUC > {label}"] = model["roc_auc"] > by[(m, base)]["roc_auc"]
        if model:
            out[f"{m}: ECE <= 0.02"] = model["ece"] <= 0.02
        if ceil and orc:
            out[f"{m}: observable ceiling >= 0.93 x oracle (goal)"] = ceil["roc_auc"] >= 0.93 * orc["roc_auc"]
        one = by.get((m, "observable_ceiling_1x"))
        if ceil and one:
            out[f"{m}: ceiling converged (|2x - 1x data| < 0.005 AUC)"] = (
                abs(ceil["roc_auc"] - one["roc_auc"]) < 0.005
            )
    return out


def markdown(results: list[dict[str, Any]], yardstick: dict[str, Any] | None = None) -> str:
    from training.yardstick import quality_markdown

    lines = [
        "# Training benchmark",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other work; "
        "LightGBM num_threads=1. Optuna budget: trials (stated per shop).",
        "",
    ]
    if yardstick:
        lines += [
            f"Ceilings fit once on independent shops (seeds {yardstick.get('seeds')}, "
            f"{yardstick.get('customers_per_shop'):,} customers each, the benchmark shops' dates) in "
            f"{yardstick.get('fit_s')} s wall; scored on each shop's test rows. `observable_ceiling_1x`: fit on "
            "the first of those shops only (convergence check). `ceiling_plus_state` / `ceiling_plus_traits`: "
            "the features plus the hidden state / traits; `trait_ceiling`: both.",
            "",
        ]
    for res in results:
        kind = "with events" if res["events"] else "orders only"
        lines += [
            f"## {res['customers']:,} customers × {res['months']} months, {kind}, seed {res['seed']}, "
            f"{res.get('trials')} trials",
            "",
            f"`rebuy train` ({', '.join(res['models'])}): **{res['train_all_s']} s** wall (oracle replay "
            f"{res['oracle_s']} s excluded; simulation {res['simulate_s']} s; {res['orders']:,} orders, "
            f"{res['events_rows']:,} events); CPU {res.get('train_all_cpu_s', '?')} s incl. the oracle and "
            f"ceiling scoring; load average (1/5/15 min) {res.get('load_average_before')} before, "
            f"{res.get('load_average_after')} after",
            "",
            quality_markdown(res["quality_by_model"]),
        ]
        ratios = [
            f"| {m} | {k} | {v:.4f} |"
            for m, d in res["models"].items()
            for k, v in d.items()
            if isinstance(v, float)
        ]
        if ratios:
            lines += ["", "| model | ratio | value |", "|---|---|---|", *ratios]
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
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[7, 8, 9], help="benchmark shops (fix before looking)"
    )
    ap.add_argument("--ceiling-seeds", type=int, nargs="*", default=[1001, 1002], help="[] = no ceilings")
    ap.add_argument(
        "--ceiling-models",
        nargs="+",
        default=["churn", "repurchase"],
        help="specs to fit ceilings for (the regressions' truth needs Monte Carlo paths: slow)",
    )
    ap.add_argument("--no-trait-ceilings", action="store_true", help="observable ceilings only")
    ap.add_argument("--trials", type=int, default=None, help="override the Optuna trial budget")
    ap.add_argument("--models", nargs="+", default=["churn", "repurchase", "days_to_next", "value"])
    ap.add_argument("--orders-only", action="store_true", help="shops without events")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "train" if args.customers == 20_000 else f"train-{args.customers}"
    stem += "-orders-only" if args.orders_only else ""
    stem += f"-{args.tag}" if args.tag else ""
    events = not args.orders_only
    ys, ys_info = None, None
    if args.ceiling_seeds:
        from rebuy.config import Config
        from rebuy.simulator import SimConfig
        from training.specs import default_specs
        from training.yardstick import OBSERVABLE, simulated_yardstick

        cfg = Config()
        specs = [default_specs(cfg)[n] for n in args.ceiling_models]
        t, c = time.perf_counter(), _cpu_seconds()
        sc = SimConfig(customers=args.customers, months=args.months, seed=args.seeds[0], events=events)
        kinds = [OBSERVABLE] if args.no_trait_ceilings else None
        ys = simulated_yardstick(cfg, sc, specs, seeds=args.ceiling_seeds, kinds=kinds)
        ys_info = {
            **ys.info,
            "fit_s": round(time.perf_counter() - t, 1),
            "fit_cpu_s": round(_cpu_seconds() - c, 1),
        }
        print(f"ceilings: {ys_info}", flush=True)
    results: list[dict[str, Any]] = []
    md = ""
    for seed in args.seeds:
        results.append(
            run_one(args.customers, args.months, seed, events, args.trials, ys, tuple(args.models))
        )
        # written after each shop, so a long run never loses the finished tables
        payload = {"yardstick": ys_info, "results": results}
        (out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        md = markdown(results, ys_info)
        (out / f"{stem}.md").write_text(md, encoding="utf-8")
        print(md, flush=True)


if __name__ == "__main__":
    main()
