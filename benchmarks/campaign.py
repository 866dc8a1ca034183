"""Campaign benchmark: import + learn + report of a 60k-customer, 3-arm campaign, and the true value of
what the report recommends.

For each seed the simulator runs a shop, then a randomized campaign (arms none / coupon_10pct /
wake_up_gift, equal shares) on 60k customers, exported as a CSV the way the simulator writes it
(converted and consents as True/False) plus the shop's own margin per customer (revenue × (margin −
redemption share) − shipping − cost, the same `realised_margin` rebuy uses; no cost where no channel was
consented, since no message went out). Timed: the two commands a user runs, each in its own process —
`rebuy import-campaign` (validate + write) and `rebuy report campaign` (read, learn every outcome with
both learners, IPS/SNIPS/DR of every policy, HTML + JSON, MLflow) — wall time and the CPU time of the
two processes; bar ≤ 60 s. The commands run with a bytecode cache, as on any installed system (this
machine sets PYTHONDONTWRITEBYTECODE, which would make every process compile its libraries from source);
a first, untimed-for-the-bar run on a small campaign fills that cache and creates the data directory's
MLflow database, and its time is reported separately.

Then the simulator's truth on 3,000 sampled customers values the recommended policy (personalised
greedy, one arm for everyone, or nothing) as a share of the oracle (best arm per customer by true
incremental margin, chosen on one Monte Carlo estimate of the truth and valued on an independent one),
and says whether the recommendation is the truth's best option among the ones it chooses from.

Run on demand: `.venv/bin/python benchmarks/campaign.py [--seeds 5] [--customers 60000] [--effect-scale 1]`.
Writes benchmarks/results/campaign.json and campaign.md (suffix `-scaleX` when --effect-scale is not 1).
Measured on a 2-core machine shared with other work (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this folder holds scripts named like packages (features.py, train.py)

from rebuy.campaign_import import read_campaign  # noqa: E402
from rebuy.config import Config, load_config  # noqa: E402
from rebuy.simulator import ShopSimulator, SimConfig  # noqa: E402
from rebuy.timeutil import telemetry_off  # noqa: E402
from training.campaign import campaign_truth, learn_campaign  # noqa: E402
from training.offer import personalised_actions, realised_margin  # noqa: E402

ARMS = ("none", "coupon_10pct", "wake_up_gift")
ATTRS = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "discount_share",
    "last_category",
    "age",
    "region",
    "consent_email",
    "consent_sms",
    "consent_push",
]
CONSENTS = ["consent_email", "consent_sms", "consent_push"]


def export_campaign(sim: ShopSimulator, customers: int, seed: int, path: Path) -> pd.DataFrame:
    """The simulated campaign as a shop would export it (CSV at `path`); returns the full export."""
    _, export = sim.randomized_campaign(sim.now, offers=ARMS, n_customers=customers, seed=seed)
    sent = export["arm"].where(export[CONSENTS].any(axis=1), "none")  # unreachable: no message, no cost
    export["margin"] = realised_margin(
        export["spend"].to_numpy(), export["orders"].to_numpy(), sent.to_numpy(), Config().offers
    )
    export[["customer_id", *ATTRS, "arm", "converted", "spend", "margin"]].to_csv(path, index=False)
    return export


def child_env(cache: Path) -> dict[str, str]:
    """The environment of the timed commands: telemetry off, and a bytecode cache like any install's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPYCACHEPREFIX=str(cache),
        FEAST_USAGE="False",
        BENTOML_DO_NOT_TRACK="True",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `python -m cli ARGS`; (wall seconds, CPU seconds of the child). Fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"rebuy {' '.join(args[:2])} failed:\n{res.stdout}\n{res.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def import_and_report(
    csv: Path, name: str, data_dir: Path, seed: int, env: dict[str, str]
) -> dict[str, float]:
    """The two timed commands; the report's JSON is read back by the caller."""
    imp = ["import-campaign", str(csv), "--name", name, "--data-dir", str(data_dir), "--customer-id"]
    imp += ["customer_id", "--arm", "arm", "--control", "none"]
    imp += [a for o in ("converted", "spend", "margin") for a in ("--outcome", o)]
    imp += [a for c in ATTRS for a in ("--attribute", c)]
    rep = ["report", "campaign", name, "--data-dir", str(data_dir), "--outcome", "margin", "--no-costs"]
    rep += ["--seed", str(seed)]
    w1, c1 = run_cli(imp, env)
    w2, c2 = run_cli(rep, env)
    return {
        "seconds_import": w1,
        "seconds_report": w2,
        "seconds_total": w1 + w2,
        "cpu_seconds_import": c1,
        "cpu_seconds_report": c2,
        "cpu_seconds_total": c1 + c2,
    }


def one_seed(
    seed: int, customers: int, months: int, scale: float, paths: int, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    sim = ShopSimulator(
        SimConfig(customers=int(customers * 1.1), months=months, seed=seed, events=False, effect_scale=scale)
    )
    sim.run_history()
    csv = work / f"campaign_{seed}.csv"
    export = export_campaign(sim, customers, seed, csv)
    data_dir = work / "data"
    load_avg = os.getloadavg()[0]
    timing = import_and_report(csv, f"bench{seed}", data_dir, seed, env)
    cfg = load_config(None, data_dir=data_dir)
    doc = json.loads(
        (cfg.paths.reports_dir / "campaigns" / f"bench{seed}" / "campaign_report.json").read_text()
    )
    rec = doc["recommendation"]

    sample = export.sample(3000, random_state=seed)
    cols = [f"expected_margin__{a}" for a in ARMS]
    ids = sample["customer_id"]
    attr_days = cfg.offers.attribution_days
    # two independent Monte Carlo estimates of the truth (its random streams depend on the order of the ids)
    m_a = campaign_truth(sim, sample, ARMS, attr_days, paths=paths).loc[ids, cols].to_numpy()
    m_b = campaign_truth(sim, sample.iloc[::-1], ARMS, attr_days, paths=paths).loc[ids, cols].to_numpy()
    m = (m_a + m_b) / 2
    rows_ = np.arange(len(m))
    if rec["action"] == "personalise":
        # the same learning in this process (same seed, deterministic) to get the model the report chose
        data = read_campaign(f"bench{seed}", cfg)
        again = learn_campaign(data, None, primary="margin", use_costs=False, seed=seed)
        assert again.recommendation["action"] == "personalise", again.recommendation
        frame = data.frame.set_index("customer_id").loc[ids]
        model = again.outcomes["margin"].selection.model  # type: ignore[union-attr]
        acts = personalised_actions(
            model, model.encoder.transform(frame[ATTRS].reset_index(drop=True)), "margin"
        )
    else:
        acts = np.full(len(sample), rec["arm"] if rec["action"] == "best_arm" else "none", dtype=object)
    col = {a: i for i, a in enumerate(ARMS)}
    v_rec = float(m[rows_, [col[a] for a in acts]].mean())
    # cross-fitted oracle: chosen on one estimate, valued on the other (noise cannot inflate it)
    v_oracle = float((m_b[rows_, m_a.argmax(axis=1)].mean() + m_a[rows_, m_b.argmax(axis=1)].mean()) / 2)
    const = m.mean(axis=0)
    best = ARMS[int(np.argmax(const))]
    # the truth's best option among those the report chooses from: nothing, one arm, or personalising
    # (personalising counts as right when its true value beats every constant policy)
    if rec["action"] == "personalise":
        matches = v_rec > float(const.max())
    else:
        matches = (rec["arm"] if rec["action"] == "best_arm" else "none") == best
    return {
        "seed": seed,
        "rows": len(export),
        **timing,
        "load_average_1min": load_avg,
        "recommendation": rec["action"],
        "arm": rec.get("arm"),
        "v_recommended": v_rec,
        "v_oracle": v_oracle,
        "v_best_constant": float(const.max()),
        "best_constant": best,
        "values_constant": {a: float(v) for a, v in zip(ARMS, const, strict=True)},
        "matches_truth": bool(matches),
        "share_recommended": v_rec / v_oracle if v_oracle else np.nan,
        "share_best_constant": float(const.max()) / v_oracle if v_oracle else np.nan,
    }


def import_cpu(env: dict[str, str]) -> float:
    """CPU seconds a fresh process spends importing what `rebuy report campaign` needs (bytecode cached)."""
    code = (
        "import time; t = time.process_time(); import cli.app, training.campaign, mlflow, "
        "mlflow.store.tracking.sqlalchemy_store; print(time.process_time() - t)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return float(res.stdout.strip() or "nan")


def phases(data_dir: Path, name: str, seed: int) -> dict[str, float]:
    """CPU seconds of each step of the report, run again in this process: where the time goes."""
    from training.campaign import log_report, write_report

    cfg = load_config(None, data_dir=data_dir)
    out: dict[str, float] = {}
    c = time.process_time()

    def lap(step: str) -> None:
        nonlocal c
        now = time.process_time()
        out[step] = now - c
        c = now

    data = read_campaign(name, cfg)
    lap("read")
    report = learn_campaign(data, None, primary="margin", use_costs=False, seed=seed)
    lap("learn (3 outcomes, 2 learners, policy evaluation)")
    files = write_report(report, data_dir / "phases")
    lap("write HTML + JSON")
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (imports timed on their own above)

    lap("(import mlflow in this process)")
    log_report(cfg, report, files)
    lap("log to MLflow")
    return out


def first_run(work: Path, customers: int, env: dict[str, str]) -> dict[str, float]:
    """Import + report of a small campaign on a fresh data directory with an empty bytecode cache: what
    the very first use costs (compiling the libraries, creating the MLflow database); not the bar."""
    sim = ShopSimulator(SimConfig(customers=int(customers * 1.1), months=3, seed=0, events=False))
    sim.run_history()
    csv = work / "campaign_first.csv"
    export_campaign(sim, customers, 0, csv)
    return import_and_report(csv, "first", work / "data", 0, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--customers", type=int, default=60_000)
    ap.add_argument("--months", type=int, default=9)
    ap.add_argument("--effect-scale", type=float, default=1.0)
    ap.add_argument("--paths", type=int, default=64)
    args = ap.parse_args()
    telemetry_off()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Progress() as bar:
        work = Path(tmp)
        env = child_env(work / "pycache")
        task = bar.add_task("first run (bytecode cache, MLflow database)", total=args.seeds + 1)
        first = first_run(work, 3000, env)
        bar.advance(task)
        for seed in range(1, args.seeds + 1):
            bar.update(task, description=f"seed {seed}")
            rows.append(one_seed(seed, args.customers, args.months, args.effect_scale, args.paths, work, env))
            bar.advance(task)
        bar.update(task, description="where the time goes")
        where = {"imports of a report process": import_cpu(env), **phases(work / "data", "bench1", 1)}
    df = pd.DataFrame(rows)
    summary = {
        "first_run_small_campaign": first,
        "seconds_total_max": float(df["seconds_total"].max()),
        "seconds_total_mean": float(df["seconds_total"].mean()),
        "cpu_seconds_total_max": float(df["cpu_seconds_total"].max()),
        "cpu_seconds_total_mean": float(df["cpu_seconds_total"].mean()),
        "bar_60s": bool(df["seconds_total"].max() <= 60),
        "share_recommended_mean": float(df["share_recommended"].mean()),
        "share_best_constant_mean": float(df["share_best_constant"].mean()),
        "recommendation_matches_truth": int(df["matches_truth"].sum()),
        "load_average_1min_max": float(df["load_average_1min"].max()),
        "cpu_seconds_by_step_seed1": where,
    }
    meta = {
        "machine": f"{platform.machine()}, 2 cores shared with other work",
        "python": platform.python_version(),
        **vars(args),
    }
    suffix = "" if args.effect_scale == 1.0 else f"-scale{args.effect_scale:g}"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"campaign{suffix}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "seeds": rows}, indent=2, default=str), encoding="utf-8"
    )
    lines = [
        f"# Campaign import + learn + report ({args.seeds} seeds, {args.customers} customers, arms "
        f"{', '.join(ARMS)}, effect scale {args.effect_scale:g}; {meta['machine']})",
        "",
        f"- wall time of `rebuy import-campaign` + `rebuy report campaign` (two processes): mean "
        f"{summary['seconds_total_mean']:.1f} s, max {summary['seconds_total_max']:.1f} s (bar ≤ 60 s: "
        f"{'met' if summary['bar_60s'] else 'NOT met'}); CPU time of the two processes mean "
        f"{summary['cpu_seconds_total_mean']:.1f} s, max {summary['cpu_seconds_total_max']:.1f} s (wall time "
        f"includes waiting for the shared cores; 1-minute load average up to "
        f"{summary['load_average_1min_max']:.1f} on 2 cores)",
        f"- true value of the recommended policy: mean {summary['share_recommended_mean']:.1%} of the oracle "
        f"(best constant: {summary['share_best_constant_mean']:.1%}); the recommendation is the truth's best "
        f"option in {summary['recommendation_matches_truth']} of {args.seeds} seeds",
        f"- first use (3,000-row campaign, empty bytecode cache, new MLflow database; not the bar): "
        f"{first['seconds_total']:.1f} s wall, {first['cpu_seconds_total']:.1f} s CPU",
        "- where the report's CPU time goes (seed 1, steps re-run in one process): "
        + "; ".join(f"{k} {v:.1f} s" for k, v in where.items()),
        "",
        "| seed | rows | import s | report s | CPU s | load | recommendation | true value | oracle | "
        "best constant | matches truth | share of oracle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rec = r["recommendation"] + (f" ({r['arm']})" if r["arm"] else "")
        lines.append(
            f"| {r['seed']} | {r['rows']} | {r['seconds_import']:.1f} | {r['seconds_report']:.1f} | "
            f"{r['cpu_seconds_total']:.1f} | {r['load_average_1min']:.1f} | {rec} | {r['v_recommended']:.4f} | "
            f"{r['v_oracle']:.4f} | {r['v_best_constant']:.4f} ({r['best_constant']}) | "
            f"{'yes' if r['matches_truth'] else 'no'} | {r['share_recommended']:.1%} |"
        )
    (out / f"campaign{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
