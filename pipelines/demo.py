"""`make demo` / `rebuy demo`: the whole loop on a simulated shop, with the embedded defaults.

simulate → a randomized campaign the shop ran before rebuy (on the live simulated shop, so its orders are
in the tables) → validate/import, import its decisions into the decision log → features
apply/build/materialize → train (with the simulator as oracle) and train the offer model from those
decisions → start the service on 127.0.0.1 → closed loop over simulated days → uplift and drift reports →
stop the service → a summary of model quality, the offer model, measured vs true uplift, and where to look.

Why the past campaign: the offer model learns from randomized decisions whose attribution window is over;
rebuy's own exploration has none matured before the loop's first retrain, so without a past campaign
offers would only be explored, never targeted. A real shop imports its past randomized campaigns the same
way (`rebuy import-decisions`).

The demo owns its data directory: a rerun starts clean on purpose (and says so). It refuses to
clear a directory it did not create.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from rebuy.config import Config, load_config
from rebuy.errors import RebuyError

MARKER = ".rebuy-demo"


@dataclass
class DemoOptions:
    data_dir: Path = Path("demo")
    customers: int = 5_000
    months: int = 24
    seed: int = 7
    days: int = 14
    attribution_days: int = 7
    retrain_every_days: int | None = 7
    trials: int = 4
    cutoff_step_days: int = 28
    every_hours: int = 6
    # the pre-rebuy randomized campaigns: one a week for this many weeks (0 = none), each reaching this
    # share of the customers with an order. Four weeks of a 5k shop give the gate ~6k held-out decisions,
    # enough to tell the learned policy from uniformly random offers (one week was not: measured)
    past_campaign_weeks: int = 4
    past_campaign_share: float = 1.0


@dataclass
class DemoResult:
    data_dir: Path
    config_path: Path
    timings: dict[str, float] = field(default_factory=dict)
    quality: list[dict[str, Any]] = field(default_factory=list)
    offer: dict[str, Any] = field(default_factory=dict)
    loop: dict[str, Any] = field(default_factory=dict)
    kpis: dict[str, Any] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_dir(data_dir: Path, console: Console) -> None:
    """Start clean: remove a previous demo (only one this command made), create the folder."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise RebuyError(f"{data_dir} exists and was not made by `rebuy demo`; choose another --data-dir")
        console.print(f"[yellow]starting clean:[/] removing the previous demo in {data_dir}")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by rebuy demo; `rebuy demo` clears this folder on each run\n")


def demo_config_text(opts: DemoOptions, port: int, token: str) -> str:
    """The demo's rebuy.toml: the embedded defaults plus a free port, an admin token and a small budget."""
    return "\n".join(
        [
            "# written by `rebuy demo`: the embedded defaults, plus what a demo on one laptop needs",
            "[paths]",
            'data_dir = "."',
            "",
            "[serving]",
            f"port = {port}",
            f'admin_token = "{token}"',
            "",
            "[features]",
            f"cutoff_step_days = {opts.cutoff_step_days}",
            "",
            "[offers]",
            f"attribution_days = {opts.attribution_days}",
            "",
            "# a pass every 6 h still reaches every timezone's waking hours; hourly passes would cost 24 a day",
            "[policy.schedule]",
            f"every_hours = {opts.every_hours}",
            "",
            "[training.optuna]",
            f"trials = {opts.trials}",
            "",
            "[simulator]",
            f"customers = {opts.customers}",
            f"months = {opts.months}",
            f"seed = {opts.seed}",
            "",
        ]
    )


@contextmanager
def _timed(timings: dict[str, float], name: str, console: Console) -> Iterator[None]:
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 1)
    console.print(f"[dim]{name}: {timings[name]:.1f} s[/]")


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    from features.jobs import apply_job, materialize_job
    from pipelines.decision_import import import_decisions
    from pipelines.loop import closed_loop, retrain_and_reload, running_service
    from pipelines.score_client import HttpScoreClient
    from rebuy.ingest import Sources, import_inputs, validate_inputs, write_canonical
    from rebuy.simulator import ShopSimulator, SimConfig, write_tables
    from training.run import quality_rows, simulator_oracle, train_command

    console = console or Console(stderr=True)
    data_dir = opts.data_dir.resolve()
    prepare_dir(data_dir, console)
    config_path = data_dir / "rebuy.toml"
    config_path.write_text(demo_config_text(opts, free_port(), secrets.token_urlsafe(16)), encoding="utf-8")
    cfg = load_config(config_path)
    res = DemoResult(data_dir=data_dir, config_path=config_path)
    t = res.timings

    with _timed(t, "simulate", console):
        sim = ShopSimulator(SimConfig(customers=opts.customers, months=opts.months, seed=opts.seed))
        tables = _with_progress(console, "simulating days", lambda cb: sim.run_history(progress=cb))
        if opts.past_campaign_weeks > 0 and opts.past_campaign_share > 0:
            tables = past_campaign(sim, tables, cfg, opts, data_dir / "raw" / "past_decisions.parquet")
        raw = write_tables(tables, data_dir / "raw")
        sim.save(data_dir / "raw" / "truth")
    as_of = sim.now
    sources = Sources(
        customers=raw / "customers.parquet",
        orders=raw / "orders.parquet",
        events=raw / "events.parquet",
        consent_updates=raw / "consent_updates.parquet",
    )
    with _timed(t, "validate + import", console):
        validate_inputs(cfg, sources, as_of)
        imported = import_inputs(cfg, sources, as_of, progress=True)
        tables = imported.tables
        past = data_dir / "raw" / "past_decisions.parquet"
        if past.is_file():
            res.paths["past_decisions"] = str(past)
            imp = import_decisions(cfg, past, as_of)
            console.print(f"imported {imp.written:,} past decisions ({imp.randomized:,} randomized)")
    with _timed(t, "features", console):
        apply_job(cfg)  # training builds the offline snapshots at its cutoffs itself
        materialize_job(cfg, as_of, incremental=False)
    oracle = simulator_oracle(sim)
    with _timed(t, "train", console):
        runs = train_command(cfg, "all", as_of, oracle=oracle, show_progress=True)
        res.quality = quality_rows(runs)
        res.offer = train_offer_or_reason(cfg, as_of)

    def retrain(now: pd.Timestamp, grown: dict[str, pd.DataFrame]) -> dict[str, Any]:
        return retrain_and_reload(cfg, now, grown, url)

    with _timed(t, "serve + closed loop", console), running_service(cfg, config_path) as url:
        client = HttpScoreClient(url)
        try:
            loop, tables = _with_progress(
                console,
                "simulated days",
                lambda cb: closed_loop(
                    cfg,
                    sim,
                    tables,
                    client,
                    opts.days,
                    retrain_every_days=opts.retrain_every_days,
                    retrain=retrain,
                    on_day=lambda d, s: cb(d + 1, opts.days),
                ),
            )
        finally:
            client.close()
        res.loop = {
            **loop.comparison,
            "days": loop.days,
            "retrains": len(loop.retrains),
            "offer_model": [r.get("offer") for r in loop.retrains],
            "decisions": int(sum(p["decided"] for p in loop.passes)),
            "messages": int(sum(p["sent"] for p in loop.passes)),
        }
    write_canonical(tables, cfg.paths.data_dir)
    sim.save(data_dir / "raw" / "truth")
    with _timed(t, "reports", console):
        res.kpis, res.drift, res.paths = _reports(cfg, sim.now)
    res.paths["config"] = str(config_path)
    res.paths["mlflow_ui"] = f".venv/bin/mlflow ui --backend-store-uri {cfg.mlflow_uri}"
    return res


def past_campaign(
    sim: Any, tables: dict[str, pd.DataFrame], cfg: Config, opts: DemoOptions, out: Path
) -> dict[str, pd.DataFrame]:
    """Randomized campaigns over every offer after the history, one every `attribution_days`, delivered on
    the live shop.

    The simulator's `randomized_campaign` draws each assignment (decision-log shape); stepping the live shop
    through the attribution window with those decisions puts their effects into the orders, which is what
    `rebuy train offer` joins them to. (Its own `export` is a separate branch of the history, so its rows
    are not used here.) The decisions are written as a shop's export would be, JSON columns as text.
    """
    import json

    from rebuy.simulator import SIM_OFFERS

    grown = dict(tables)
    parts = []
    for week in range(opts.past_campaign_weeks):
        eligible = int((sim.state.active & (sim.state.n_orders >= 1)).sum())
        n = max(1, round(opts.past_campaign_share * eligible))
        decisions, _ = sim.randomized_campaign(
            sim.now, SIM_OFFERS, n_customers=n, seed=opts.seed + week, campaign=f"pre_rebuy_{week + 1}"
        )
        new = sim.step(days=cfg.offers.attribution_days, decisions=decisions)
        grown = {
            k: pd.concat([grown[k], new[k]], ignore_index=True) if k in new and len(new[k]) else grown[k]
            for k in grown
        }
        parts.append(decisions)
    flat = pd.concat(parts, ignore_index=True)
    for col in ("distribution", "model_versions", "scores", "reasons"):
        flat[col] = [json.dumps(v, sort_keys=True) for v in flat[col]]
    out.parent.mkdir(parents=True, exist_ok=True)
    flat.to_parquet(out, index=False)
    return grown


def train_offer_or_reason(cfg: Config, as_of: pd.Timestamp) -> dict[str, Any]:
    """The offer model from the imported decisions; the demo goes on (offers explored only) if it cannot."""
    from training.offer import train_offer

    try:
        out = train_offer(cfg, as_of)
    except RebuyError as exc:
        return {"trained": False, "reason": str(exc).splitlines()[0]}
    return {"trained": True, **{k: out[k] for k in ("version", "promoted", "reason", "learners") if k in out}}


def _reports(cfg: Config, as_of: pd.Timestamp) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    from pipelines.drift import run_drift
    from pipelines.drift_sources import MONITORED_MODELS, load_model_source
    from pipelines.uplift_report import report_uplift

    report = report_uplift(cfg, as_of)
    paths = {k: str(v) for k, v in (report.get("paths") or {}).items()}
    paths.setdefault("uplift_report", str(cfg.paths.reports_dir / "uplift"))
    try:
        drift = run_drift(cfg, as_of, list(MONITORED_MODELS), load_source=load_model_source, progress=True)
        drift_rows: list[dict[str, Any]] = [
            {str(k): v for k, v in r.items()} for r in drift.to_dict("records")
        ]
        paths["drift_index"] = str(cfg.paths.reports_dir / "drift" / "index.html")
    except RebuyError as exc:  # e.g. no served predictions yet: say so, keep the rest of the demo
        drift_rows = [{"model": "all", "status": "not run", "line": str(exc)}]
    return dict(report["report"].get("kpis") or {}), drift_rows, paths


def _with_progress(console: Console, text: str, work: Callable[[Callable[[int, int], None]], Any]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(text), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as p:
        task = p.add_task(text, total=None)
        return work(lambda done, total: p.update(task, completed=done, total=total))


def render_summary(res: DemoResult, console: Console) -> None:
    """The short table a reader wants: quality vs oracle and baselines, uplift vs truth, where to look."""
    q = Table(title="model quality on the held-out cutoffs (same rows per model)")
    for col in ("model", "scorer", "roc_auc", "ece", "mae", "spearman"):
        q.add_column(col, justify="right" if col not in ("model", "scorer") else "left")
    for row in res.quality:
        q.add_row(
            str(row["model"]),
            str(row["scorer"]),
            *(
                f"{row[c]:.3f}" if isinstance(row.get(c), float) else ""
                for c in ("roc_auc", "ece", "mae", "spearman")
            ),
        )
    console.print(q)
    if res.offer:
        o = Table(title="offer model (learned from the pre-rebuy randomized campaigns)")
        o.add_column("what")
        o.add_column("value")
        if res.offer.get("trained"):
            o.add_row("rebuy-offer version", str(res.offer.get("version")))
            o.add_row("champion", "yes" if res.offer.get("promoted") else "no (challenger only)")
            o.add_row("learners", str(res.offer.get("learners", "")))
        o.add_row("gate", str(res.offer.get("reason", "")))
        console.print(o)
    lp = res.loop
    u = Table(
        title=f"closed loop: {lp.get('days')} simulated days, {lp.get('decisions')} decisions, "
        f"{lp.get('messages')} messages, {lp.get('retrains')} retrains"
    )
    u.add_column("uplift in conversion (attribution window)")
    u.add_column("value", justify="right")
    if lp.get("measured_uplift") is not None:
        lo, hi = lp["measured_ci"]
        u.add_row(
            "measured: treatment − randomized control",
            f"{lp['measured_uplift']:+.4f}  [{lo:+.4f}, {hi:+.4f}]",
        )
        u.add_row("true (simulator, same customers)", f"{lp['true_uplift']:+.4f}")
        u.add_row("truth inside the 95% CI", "yes" if lp.get("covered") else "no")
        u.add_row("matured decisions (treated / control)", f"{lp['treated']} / {lp['control']}")
    else:
        u.add_row("no matured decisions yet", lp.get("note", ""))
    for i, offer in enumerate(lp.get("offer_model") or [], 1):
        u.add_row(f"offer model at retrain {i}", str(offer)[:120])
    console.print(u)
    if res.kpis:  # {group: {kpi: value}}
        groups = list(res.kpis)
        k = Table(title="KPIs (the seeds'), matured decisions by group")
        k.add_column("KPI")
        for g in groups:
            k.add_column(g, justify="right")
        for name in dict.fromkeys(n for g in groups for n in (res.kpis[g] or {})):
            vals = [(res.kpis[g] or {}).get(name) for g in groups]
            k.add_row(name, *(f"{v:.4g}" if isinstance(v, int | float) else "" for v in vals))
        console.print(k)
    d = Table(title="drift")
    d.add_column("model")
    d.add_column("status")
    d.add_column("why (the report has the rest)")
    for row in res.drift:
        d.add_row(
            str(row.get("model")),
            str(row.get("status", "")),
            str(row.get("line", "")).split(" — ", 1)[-1][:160],
        )
    console.print(d)
    w = Table(title="where to look")
    w.add_column("what")
    w.add_column("where")
    for name, p in res.paths.items():
        w.add_row(name, p)
    w.add_row("timings (s)", ", ".join(f"{k} {v}" for k, v in res.timings.items()))
    console.print(w)
