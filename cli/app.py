"""The one `rebuy` command. It parses arguments, loads the config and calls stage functions.

Stage packages are imported inside each command so `rebuy --help` stays fast and no
command pays for libraries it does not use. No logic lives here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from rebuy.config import Config, ConfigError, load_config
from rebuy.errors import RebuyError
from rebuy.timeutil import parse_as_of, quiet_libraries, telemetry_off

app = typer.Typer(
    name="rebuy",
    help="Retention decisions from a shop's own data, and the uplift they cause.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
features_app = typer.Typer(
    help="Feast repository: registry, offline features, online store.", no_args_is_help=True
)
models_app = typer.Typer(help="Registry aliases: list, promote, rollback.", no_args_is_help=True)
report_app = typer.Typer(help="Reports: uplift of rebuy's decisions, past campaigns.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(report_app, name="report")
db_app = typer.Typer(help="The decision-log database: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# Rich cuts lines at 80 columns when a stream is not a terminal (a pipe, a file, CI logs): tables there
# get their natural width instead ("0.77…" is useless in a log). COLUMNS, when set, still wins.
PIPE_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (tables, results) or stderr (messages), full width when not a terminal."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = make_console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="rebuy.toml; the embedded defaults when omitted.")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Overrides paths.data_dir of the config.")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="What 'now' is (ISO 8601, UTC if naive); default: the wall clock."),
]


def load(config: Path | None, data_dir: Path | None) -> Config:
    telemetry_off()
    quiet_libraries()
    return load_config(config, data_dir=data_dir)


@app.callback()
def _root() -> None:
    """rebuy — see `rebuy COMMAND --help`."""


# --- stage commands are added below, each calling one stage function --------------------------


# --- import: rebuy validate / import / import-campaign (rebuy.ingest, rebuy.campaign_import) ----------

_InFile = Annotated[Path | None, typer.Option(help="Overrides the path in the config.", dir_okay=False)]
_FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="csv or parquet; default: by file suffix.", case_sensitive=False),
]


def _import_command(
    write: bool,
    config: Path | None,
    data_dir: Path | None,
    as_of: str | None,
    customers: Path | None,
    orders: Path | None,
    events: Path | None,
    consent: Path | None,
    fmt: str | None,
    messages: Path | None = None,
) -> None:
    from rebuy.ingest import Sources, import_inputs, summary_table, validate_inputs

    cfg = load(config, data_dir)
    if fmt is not None and fmt.lower() not in {"csv", "parquet"}:
        raise typer.BadParameter(f"--format must be csv or parquet, not {fmt!r}")
    sources = Sources.from_config(
        cfg,
        customers=customers,
        orders=orders,
        events=events,
        consent_updates=consent,
        messages=messages,
        format=fmt.lower() if fmt else None,
    )
    try:
        result = (import_inputs if write else validate_inputs)(
            cfg, sources, parse_as_of(as_of), progress=True
        )
    except RebuyError as exc:  # shown plainly under CliRunner too, not only through main()
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(2) from exc
    make_console().print(summary_table(result))


@app.command("validate")
def validate_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    customers: _InFile = None,
    orders: _InFile = None,
    events: _InFile = None,
    consent: Annotated[Path | None, typer.Option(help="Consent updates; overrides the config.")] = None,
    fmt: _FormatOpt = None,
    messages: Annotated[
        Path | None, typer.Option(help="Sends (newsletters, other tools); overrides the config.")
    ] = None,
) -> None:
    """Check the shop's files against the data contract. Writes nothing."""
    _import_command(False, config, data_dir, as_of, customers, orders, events, consent, fmt, messages)


@app.command("import")
def import_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    customers: _InFile = None,
    orders: _InFile = None,
    events: _InFile = None,
    consent: Annotated[Path | None, typer.Option(help="Consent updates; overrides the config.")] = None,
    fmt: _FormatOpt = None,
    messages: Annotated[
        Path | None, typer.Option(help="Sends (newsletters, other tools); overrides the config.")
    ] = None,
) -> None:
    """Validate the shop's files and write canonical Parquet into the data directory (all or nothing)."""
    _import_command(True, config, data_dir, as_of, customers, orders, events, consent, fmt, messages)


@app.command("import-campaign")
def import_campaign_command(
    file: Annotated[Path, typer.Argument(help="The campaign export (CSV or Parquet), one row per customer.")],
    name: Annotated[
        str | None, typer.Option(help="Stored as campaigns/NAME; default: the file's stem.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    arm: Annotated[str | None, typer.Option(help="Column with the arm each customer got.")] = None,
    control: Annotated[str | None, typer.Option(help="The no-message arm's value.")] = None,
    arms: Annotated[
        str | None, typer.Option(help="Declared arms, comma-separated; others are errors.")
    ] = None,
    propensity: Annotated[str | None, typer.Option(help="Propensity column; default: arm shares.")] = None,
    outcome: Annotated[list[str] | None, typer.Option(help="Outcome column (repeat for several).")] = None,
    attribute: Annotated[
        list[str] | None, typer.Option(help="Attribute column (repeat); default: the rest.")
    ] = None,
    categorical: Annotated[list[str] | None, typer.Option(help="Categorical attribute (repeat).")] = None,
    customer_id: Annotated[str | None, typer.Option(help="Customer id column, if any.")] = None,
    min_rows: Annotated[int | None, typer.Option(help="Fewest rows an arm may have.")] = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter.")] = None,
    decimal: Annotated[str | None, typer.Option(help="Decimal mark.")] = None,
    encoding: Annotated[str | None, typer.Option(help="File encoding.")] = None,
    fmt: _FormatOpt = None,
    check_only: Annotated[bool, typer.Option("--check", help="Validate only; write nothing.")] = False,
) -> None:
    """Import a past randomized campaign export into the data directory (all or nothing)."""
    from rebuy.campaign_import import (
        campaign_dir,
        campaign_summary,
        import_campaign,
        roles_with,
        validate_campaign,
    )

    cfg = load(config, data_dir)
    roles = roles_with(
        cfg,
        arm=arm,
        control=control,
        arms=arms.split(",") if arms else None,
        propensity=propensity,
        outcomes=outcome,
        attributes=attribute,
        categorical=categorical,
        customer_id=customer_id,
        min_rows_per_arm=min_rows,
        delimiter=delimiter,
        decimal=decimal,
        encoding=encoding,
    )
    name = name or file.stem
    try:
        if check_only:
            data, where = validate_campaign(cfg, file, roles, fmt, name), None
        else:
            data, where = import_campaign(cfg, file, name, roles, fmt), campaign_dir(cfg, name)
    except RebuyError as exc:  # shown plainly under CliRunner too, not only through main()
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(2) from exc
    make_console().print(campaign_summary(data, where))


@app.command("train")
def train_cli(
    which: Annotated[str, typer.Argument(help="churn | repurchase | value | offer | all")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Train, track and gate models (repurchase also trains days-to-next-order)."""
    cfg = load(config, data_dir)
    if which == "offer":
        from training.offer import train_offer

        console.print(train_offer(cfg, parse_as_of(as_of)))
        return
    from training.run import render, train_command

    render(train_command(cfg, which, parse_as_of(as_of)), console)


@models_app.command("list")
def models_list_cli(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Every registered rebuy model version with its aliases and the last alias note."""
    from rich.table import Table

    from training.registry import list_models

    rows = list_models(load(config, data_dir))
    table = Table("model", "version", "aliases", "test metric", "note")
    for r in rows:
        table.add_row(r["model"], str(r["version"]), r["aliases"], r["test_metric"], r["note"])
    make_console().print(table)


@models_app.command("promote")
def models_promote_cli(
    name: Annotated[str, typer.Argument(help="churn | repurchase | days_to_next | value (or rebuy-…)")],
    version: Annotated[str, typer.Argument(help="The version to make @champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the version).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make a version @champion by hand."""
    from training.registry import promote

    previous = promote(load(config, data_dir), name, version, reason)
    console.print(f"{name}: @champion v{version} (was {previous or 'none'})")


@models_app.command("rollback")
def models_rollback_cli(
    name: Annotated[str, typer.Argument(help="churn | repurchase | days_to_next | value (or rebuy-…)")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the version).")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version to restore; default the previous champion.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Move @champion back to the version it replaced."""
    from training.registry import rollback

    version = rollback(load(config, data_dir), name, reason, to)
    console.print(f"{name}: @champion is v{version} again")


@report_app.command("campaign")
def report_campaign_cli(
    name: Annotated[
        str, typer.Argument(help="An imported campaign (its --name at import-campaign, or its folder).")
    ],
    outcome: Annotated[
        str | None, typer.Option(help="Outcome the recommendation follows; default the first non-binary one.")
    ] = None,
    test_share: Annotated[float, typer.Option(help="Share of rows held out for evaluation.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and the learners.")] = 0,
    costs: Annotated[
        bool,
        typer.Option(
            "--costs/--no-costs", help="Subtract the catalogue's cost per send from non-binary outcomes."
        ),
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the HTML + JSON; default reports/campaigns/NAME.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """What rebuy would have done with a past campaign: effects, uplift, policy values, a recommendation."""
    from training.campaign import report_campaign

    report, files = report_campaign(
        load(config, data_dir),
        name,
        outcome=outcome,
        test_share=test_share,
        seed=seed,
        use_costs=costs,
        out_dir=out,
    )
    rec = report.recommendation
    console.print(
        f"recommendation ({rec['outcome']}): {rec['action']}"
        f"{' ' + rec['arm'] if rec.get('arm') else ''} — {rec['reason']}"
    )
    console.print(f"report: {files['html']}  {files['json']}")


@app.command("score")
def score_cli(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (atomically).")],
    customers: Annotated[
        Path | None,
        typer.Option(
            "--customers",
            help="File of ids (one per line, or a Parquet/CSV with customer_id); default every customer.",
        ),
    ] = None,
    offers: Annotated[
        str | None, typer.Option("--offers", help="Comma-separated eligible offers; default all.")
    ] = None,
    reasons: Annotated[
        bool, typer.Option("--reasons/--no-reasons", help="Compute top reasons (slower).")
    ] = True,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="duckdb: online store, one process; spark: snapshots on Spark, --out is a Parquet folder. "
            "Default [engine] compute.",
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Batch-score customers offline through the same scorer as the service."""
    from serving.batch import read_id_list, score_to_parquet, score_to_parquet_spark

    cfg = load(config, data_dir)
    choice = engine or cfg.engine.compute
    if choice not in ("duckdb", "spark"):
        raise typer.BadParameter(f"--engine must be duckdb or spark, not {choice!r}")
    run = score_to_parquet_spark if choice == "spark" else score_to_parquet
    res = run(
        cfg,
        parse_as_of(as_of),
        out,
        read_id_list(customers) if customers else None,
        offers.split(",") if offers else None,
        reasons=reasons,
    )
    console.print(
        f"scored {res.customers} customers ({res.cold_start} cold start) -> {res.path} in "
        f"{res.total_seconds:.1f}s (features {res.read_seconds:.1f}s, models {res.model_seconds:.2f}s); "
        f"versions {res.model_versions}"
    )


@app.command("serve")
def serve_cli(
    workers: Annotated[int | None, typer.Option("--workers", help="1 or 2; default serving.workers.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The prediction service on 127.0.0.1 (serving.host/port): /score, /score_features; OpenAPI at /docs.json."""
    from serving.server import serve

    serve(load(config, data_dir), config, workers=workers)


@app.command("simulate")
def simulate_cli(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the tables (Parquet), truth/ and campaign/.")
    ],
    customers: Annotated[
        int | None, typer.Option("--customers", help="Default: simulator.customers.")
    ] = None,
    months: Annotated[int | None, typer.Option("--months", help="Default: simulator.months.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Default: simulator.seed.")] = None,
    events: Annotated[bool, typer.Option("--events/--no-events", help="Write behaviour events.")] = True,
    campaign: Annotated[
        bool, typer.Option("--campaign", help="Also write a past randomized campaign.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write a simulated shop: the input tables, its hidden truth, and optionally a past campaign export."""
    from rebuy.simulator.run import simulate_to_dir

    res = simulate_to_dir(
        load(config, data_dir),
        out,
        customers=customers,
        months=months,
        seed=seed,
        events=events,
        campaign=campaign,
    )
    rows = ", ".join(f"{k} {v:,}" for k, v in res.rows.items())
    console.print(
        f"simulated shop up to {res.now:%Y-%m-%d} -> {res.out}: {rows}"
        + (f"; campaign export {res.campaign_rows:,} rows" if res.campaign_rows is not None else "")
    )


# --- features: rebuy features apply / build / materialize / push (features.jobs) ------------------------


def _print_result(result: dict) -> None:
    for key, value in result.items():
        make_console().print(f"{key}: {value}")


@features_app.command("apply")
def features_apply_command(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Generate feature_store.yaml, register the Feast definitions and create the online tables."""
    from features.jobs import apply_job

    _print_result(apply_job(load(config, data_dir)))


@features_app.command("build")
def features_build_command(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_of: AsOfOpt = None
) -> None:
    """Offline feature snapshots at the training cutoffs and at --as-of."""
    from features.jobs import build_job

    _print_result(build_job(load(config, data_dir), parse_as_of(as_of)))


@features_app.command("materialize")
def features_materialize_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    incremental: Annotated[
        bool, typer.Option(help="Only customers with new rows since the last run.")
    ] = False,
) -> None:
    """Features as of --as-of into the online store."""
    from features.jobs import materialize_job

    _print_result(materialize_job(load(config, data_dir), parse_as_of(as_of), incremental))


@features_app.command("push")
def features_push_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    orders: Annotated[
        Path | None, typer.Option(help="New orders (canonical Parquet).", dir_okay=False)
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="New events (canonical Parquet).", dir_okay=False)
    ] = None,
) -> None:
    """Push new orders/events: the affected customers' online features, recomputed as of --as-of."""
    from features.jobs import push_job

    _print_result(push_job(load(config, data_dir), parse_as_of(as_of), orders, events))


# --- orchestrator: rebuy run / forget / report uplift (pipelines.orchestrator, pipelines.uplift_report) ----


@app.command("run")
def run_cli(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and report; write and send nothing.")
    ] = False,
) -> None:
    """One orchestration pass: triggers, /score, policy layer, decision log, outbox -> sink."""
    from pipelines.orchestrator import run

    res = run(load(config, data_dir), parse_as_of(as_of), dry_run)
    _print_result(res.summary())


@app.command("forget")
def forget_cli(
    customer_id: Annotated[str, typer.Argument(help="The customer id exactly as in the shop's data.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Right to be forgotten: pseudonymise the decision log and sink, never score or message again."""
    from pipelines.orchestrator import forget

    _print_result(forget(load(config, data_dir), customer_id, parse_as_of(as_of)))


@db_app.command("upgrade")
def db_upgrade_cli(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply the decision-log migrations (SQLite or Postgres; also applied on first use)."""
    from pipelines.schema import upgrade_stores

    for url, (before, after) in upgrade_stores(load(config, data_dir)).items():
        typer.echo(f"{url}: {before or 'new'} -> {after}")


@report_app.command("uplift")
def report_uplift_cli(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
    mlflow_log: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")
    ] = True,
) -> None:
    """Decisions joined to later orders: treatment vs control and holdout, CIs, ROI, KPIs (HTML + JSON)."""
    from pipelines.uplift_report import report_uplift

    out = report_uplift(load(config, data_dir), parse_as_of(as_of), mlflow_log=mlflow_log)
    h = out["report"]["holdout"]
    if "conversion_diff" in h:
        console.print(
            f"treatment vs holdout: conversion {h['conversion_diff']:+.4f} "
            f"(95% CI {h['conversion_ci'][0]:+.4f}..{h['conversion_ci'][1]:+.4f}, p={h['conversion_p_value']:.3g})"
        )
    console.print(
        f"report: {out['paths']['html']}  {out['paths']['json']}  mlflow run {out['mlflow_run_id']}"
    )


@app.command("evaluate-policy")
def evaluate_policy_cli(
    version: Annotated[
        str | None, typer.Option(help="rebuy-offer version to evaluate; default @challenger.")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make it @champion if it passes.")
    ] = True,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Off-policy evaluation of an offer model on held-out decisions; promotes only a surely better policy."""
    from rich.table import Table

    from training.offer import evaluate_policy

    out = evaluate_policy(load(config, data_dir), parse_as_of(as_of), version, promote=promote)
    from training.ope import ESTIMATORS

    table = Table("policy", "method", "value", "95% CI")
    pols = out["policies"]
    first = {p: i for i, p in enumerate(dict.fromkeys(pols["policy"]))}
    rank = {m: i for i, m in enumerate(ESTIMATORS)}
    rows = pols.assign(_p=pols["policy"].map(first), _m=pols["method"].map(rank).fillna(len(rank)))
    for _, r in rows.sort_values(["_p", "_m"], kind="stable").iterrows():
        table.add_row(r["policy"], r["method"], f"{r['value']:.4g}", f"[{r['low']:.4g}, {r['high']:.4g}]")
    make_console().print(table)
    console.print(
        f"rebuy-offer v{out['version']}: {out['reason']}"
        + (" — promoted to @champion" if out["promoted"] else "")
    )


# --- drift: rebuy drift / retrain (pipelines.drift) ----------------------------------------------------

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model", "-m", help="Model to monitor (repeatable); default churn, repurchase, days_to_next, value."
    ),
]


@app.command("drift")
def drift_cli(
    models: ModelsOpt = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log each report to MLflow.")] = True,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Drift reports per model (Evidently HTML + JSON), a one-line status each, and the index page."""
    from pipelines.drift import run_drift
    from pipelines.drift_sources import MONITORED_MODELS, load_model_source

    cfg = load(config, data_dir)
    out = run_drift(
        cfg,
        parse_as_of(as_of),
        models or list(MONITORED_MODELS),
        load_source=load_model_source,
        log_mlflow=mlflow,
    )
    for line in out["line"]:
        make_console().print(line, markup=False)
    console.print(f"index: {cfg.paths.reports_dir / 'drift' / 'index.html'}")


@app.command("retrain")
def retrain_cli(
    if_drift: Annotated[
        bool,
        typer.Option(
            "--if-drift/--always",
            help="Only models whose latest status is drift (default), or every listed model.",
        ),
    ] = True,
    models: ModelsOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Retrain (through the champion gate) the models whose latest drift status is drift; record why."""
    from pipelines.drift import run_retrain
    from pipelines.drift_sources import MONITORED_MODELS, train_model

    cfg = load(config, data_dir)
    out = run_retrain(
        cfg, parse_as_of(as_of), models or list(MONITORED_MODELS), if_drift=if_drift, train=train_model
    )
    for r in out.to_dict("records"):
        verdict = "retrain" if r["retrain"] else "keep"
        make_console().print(
            f"{r['model']}: {verdict} ({r['status'] or 'no report'}) — {'; '.join(r['reasons'][:2])}"
            + (f" → {r['outcome']}" if r["outcome"] else ""),
            markup=False,
        )


@app.command("loop")
def loop_cli(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    weeks: Annotated[int, typer.Option(help="Simulated weeks to run.")] = 2,
    sim_dir: Annotated[
        Path | None, typer.Option("--sim", help="Saved simulator (default: <data_dir>/raw/truth).")
    ] = None,
    retrain_every_days: Annotated[int | None, typer.Option(help="Retrain all models every N days.")] = 7,
) -> None:
    """The closed loop with the simulator: rebuy decides each day, the shop reacts, uplift meets the truth."""
    from pipelines.loop import run_loop_command

    cfg = load(config, data_dir)
    out = run_loop_command(cfg, config, sim_dir, days=7 * weeks, retrain_every_days=retrain_every_days)
    for key, value in out.items():
        typer.echo(f"{key}: {value}")


@app.command("demo")
def demo_cli(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The demo's own folder (cleared on each run).")
    ] = Path("demo"),
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 5_000,
    days: Annotated[int, typer.Option(help="Simulated days of closed loop.")] = 14,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
) -> None:
    """The whole loop on a simulated shop: simulate, import, features, train, serve, decide, report."""
    from pipelines.demo import DemoOptions, render_summary, run_demo

    telemetry_off()
    quiet_libraries()
    res = run_demo(DemoOptions(data_dir=data_dir, customers=customers, days=days, seed=seed), console)
    render_summary(res, make_console())


@app.command("import-decisions")
def import_decisions_cli(
    file: Annotated[Path, typer.Argument(help="Past decisions in the decision-log shape (Parquet or CSV).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Import a past randomized campaign's decisions into the decision log (validated, all or nothing)."""
    from pipelines.decision_import import import_decisions

    cfg = load(config, data_dir)
    try:
        res = import_decisions(cfg, file, parse_as_of(as_of))
    except RebuyError as exc:  # shown plainly under CliRunner too, not only through main()
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(2) from exc
    console.print(
        f"{res.file}: {res.rows:,} decisions ({res.randomized:,} randomized), {res.written:,} written, "
        f"{res.already_logged:,} already in the log; campaigns {res.campaigns}; offers {res.offers}",
        markup=False,
    )


def main() -> None:
    """Entry point: user-facing errors are printed plainly, with a non-zero exit and no traceback."""
    try:
        app()
    except (RebuyError, ConfigError) as exc:
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(2)


__all__ = ["AsOfOpt", "ConfigOpt", "DataDirOpt", "app", "load", "main", "parse_as_of"]
