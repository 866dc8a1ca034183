"""Where the gap to the oracle comes from: the same learner with more and more of the simulator's hidden state.

A diagnostic for issue 5's "AUC >= 0.95 x oracle" bar, never part of the product. On a simulated shop the
churn and repurchase models are trained with fixed LightGBM settings (no tuning, so only the information
differs) on the rows `rebuy train` uses (each spec's own cutoff grid, the same time split), with
  1. the v1 FeatureService features (session 1),
  2. the v2 features (adds the activity family),
  3. v2 + the hidden alive and in-intent state at the cutoff (what the oracle knows and no table shows),
  4. 3 + the hidden per-customer traits (purchase-cycle scale and shape, intent conversion).
If 3 stays far from the oracle and only 4 comes close, the remaining gap is the customers' hidden traits,
which a handful of orders per customer cannot identify, rather than features a data scientist missed.

Run on demand: `.venv/bin/python benchmarks/train_oracle_gap.py [--customers 3000 20000 --seed 11 11]`.
Writes benchmarks/results/train-oracle-gap.json and .md (shops already there are kept; the same customers
and seed are replaced). Machine: 2 cores shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/features.py would shadow the `features` package when this script's folder is sys.path[0]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "metric": "binary_logloss",
    "num_threads": 1,
    "verbosity": -1,
    "seed": 7,
}
TRAITS = ("cycle_scale_days", "cycle_shape", "conversion")


def shop_frame(customers: int, seed: int) -> tuple[pd.DataFrame, Any, dict[str, list[pd.Timestamp]]]:
    """Features (all families, request-time included), labels, rfm, hidden state and traits per (customer, cutoff)."""
    from features.compute import compute_features, epoch_seconds, request_time_features
    from features.labels import compute_labels
    from features.training_set import data_end
    from rebuy.config import Config
    from rebuy.simulator import ShopSimulator, SimConfig
    from training.baselines import rfm_at
    from training.run import spec_grid
    from training.specs import default_specs

    sim = ShopSimulator(SimConfig(customers=customers, months=24, seed=seed, events=True))
    tables = sim.run_history()
    cfg = Config()
    end = min(sim.now, data_end(tables))
    specs = default_specs(cfg)
    grids = {n: spec_grid(cfg, end, specs[n]) for n in ("churn", "repurchase")}
    cutoffs = sorted(set().union(*grids.values()))
    df = compute_features(tables, cutoffs)
    for k, v in request_time_features(df, epoch_seconds(df["cutoff"])).items():
        df[k] = v
    labels = compute_labels(tables["orders"], df[["customer_id", "cutoff"]], cfg.horizons, end)
    df = df.merge(labels, on=["customer_id", "cutoff"])
    df = df.merge(rfm_at(tables["orders"], df[["customer_id", "cutoff"]]), on=["customer_id", "cutoff"])
    # hidden state at each cutoff (day resolution, as the oracle sees it) and the fixed traits
    idx = sim._index(df["customer_id"])
    days = np.array([sim.day_of(t) for t in df["cutoff"]])
    alive, intent = np.zeros(len(df)), np.zeros(len(df))
    for d, st in sim._replay_days(sorted(set(days.tolist()))):
        rows = np.flatnonzero(days == d)
        alive[rows] = st.alive[idx[rows]]
        intent[rows] = st.intent_left[idx[rows]] > 0
    df["hidden_alive"], df["hidden_in_intent"] = alive, intent
    traits = sim.customer_truth()[["customer_id", *TRAITS]]
    return df.merge(traits, on="customer_id", how="left"), sim, grids


def ratio(
    df: pd.DataFrame,
    sim: Any,
    spec: Any,
    grid: list[pd.Timestamp],
    feats: list[str],
    oracle: np.ndarray | None,
) -> tuple[dict[str, float], np.ndarray]:
    import lightgbm as lgb

    from rebuy.config import Config
    from training.metrics import roc_auc
    from training.pipeline import prepare
    from training.split import time_split

    d = prepare(spec, df[df["cutoff"].isin(pd.DatetimeIndex(grid))], feats)
    tc = Config().training
    sp = time_split(d, spec.maturity_days, tc.test_cutoffs, tc.valid_cutoffs)
    valid = pd.concat([sp.valid, sp.calib])
    dtr = lgb.Dataset(sp.train[feats].to_numpy(float), sp.train[spec.label].to_numpy(float))
    dva = lgb.Dataset(valid[feats].to_numpy(float), valid[spec.label].to_numpy(float), reference=dtr)
    b = lgb.train(PARAMS, dtr, 3000, valid_sets=[dva], callbacks=[lgb.early_stopping(50, verbose=False)])
    y = sp.test[spec.label].to_numpy(float)
    pred = b.predict(sp.test[feats].to_numpy(float), num_iteration=b.best_iteration)
    if oracle is None:
        truth = sim.truth_at(
            sp.test[["customer_id", "cutoff"]].reset_index(drop=True), horizon_days=spec.horizon_days
        )
        p = truth["p_order"].to_numpy()
        oracle = 1 - p if spec.baseline == "churn" else p
    model, orc = roc_auc(y, pred), roc_auc(y, oracle)
    return {"auc": round(model, 4), "oracle_auc": round(orc, 4), "ratio": round(model / orc, 4)}, oracle


def run(customers: int, seed: int) -> dict[str, Any]:
    from features.training_set import feature_names
    from rebuy.config import Config
    from training.specs import default_specs

    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    df, sim, grids = shop_frame(customers, seed)
    cfg = Config()
    specs = default_specs(cfg)
    out: dict[str, Any] = {"customers": customers, "seed": seed, "rows": len(df), "models": {}}
    for name in ("churn", "repurchase"):
        spec = specs[name]
        v2 = feature_names(cfg, spec.feature_service)
        v1 = feature_names(cfg, spec.feature_service.replace("_v2", "_v1"))
        hidden = [*v2, "hidden_alive", "hidden_in_intent"]
        steps = {"v1 features": v1, "v2 features": v2, "v2 + hidden alive, intent": hidden}
        steps["v2 + hidden state + traits"] = [*hidden, *TRAITS]
        res, oracle = {}, None
        for label, feats in steps.items():
            res[label], oracle = ratio(df, sim, spec, grids[name], feats, oracle)
        out["models"][name] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(time.process_time() - c0, 1)
    out["load_average_before"] = [round(x, 2) for x in load0]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Where the gap to the oracle comes from",
        "",
        f"Machine: {os.cpu_count()} cores, shared with other work. Fixed LightGBM settings (no tuning), the rows "
        "and time split of `rebuy train`; AUC on the test cutoffs. Hidden state and traits come from the "
        "simulator (diagnostic only: no table shows them).",
        "",
        "| shop | model | features | AUC | oracle AUC | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, steps in r["models"].items():
            for label, m in steps.items():
                lines.append(
                    f"| {r['customers']:,} customers, seed {r['seed']} | {name} | {label} | "
                    f"{m['auc']:.4f} | {m['oracle_auc']:.4f} | {m['ratio']:.3f} |"
                )
    lines += ["", "| shop | rows | wall s | CPU s | load average before / after |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['customers']:,} customers, seed {r['seed']} | {r['rows']:,} | {r.get('seconds', '?')} | "
            f"{r.get('cpu_seconds', '?')} | {r.get('load_average_before', '?')} / "
            f"{r.get('load_average_after', '?')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from rebuy.timeutil import telemetry_off

    telemetry_off()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, nargs="+", default=[3000])
    ap.add_argument("--seed", type=int, nargs="+", default=[11])
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train-oracle-gap.json"
    # earlier shops stay in the table (a larger shop is run on its own, it takes long): same shop replaced
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    for c, s in zip(args.customers, args.seed, strict=True):
        new = run(c, s)
        results = [r for r in results if (r["customers"], r["seed"]) != (c, s)] + [new]
        results.sort(key=lambda r: (r["customers"], r["seed"]))
        path.write_text(json.dumps(results, indent=2), encoding="utf-8")
        md = markdown(results)
        (out / "train-oracle-gap.md").write_text(md, encoding="utf-8")
        print(md, flush=True)


if __name__ == "__main__":
    main()
