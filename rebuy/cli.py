"""The one `rebuy` command. It parses arguments, loads the config and calls stage functions.

Stage packages are imported inside each command so `rebuy --help` stays fast and no
command pays for libraries it does not use. No logic lives here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from rebuy.config import Config, ConfigError, load_config
from rebuy.errors import RebuyError
from rebuy.timeutil import parse_as_of, telemetry_off

app = typer.Typer(
    name="rebuy",
    help="Retention decisions from a shop's own data, and the uplift they cause.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
features_app = typer.Typer(help="Feast repository: registry, offline features, online store.", no_args_is_help=True)
models_app = typer.Typer(help="Registry aliases: list, promote, rollback.", no_args_is_help=True)
report_app = typer.Typer(help="Reports: uplift of rebuy's decisions, past campaigns.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(report_app, name="report")

console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="rebuy.toml; the embedded defaults when omitted.")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Overrides paths.data_dir of the config.")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="What 'now' is (ISO 8601, UTC if naive); default: the wall clock.")
]


def load(config: Path | None, data_dir: Path | None) -> Config:
    telemetry_off()
    return load_config(config, data_dir=data_dir)


@app.callback()
def _root() -> None:
    """rebuy — see `rebuy COMMAND --help`."""


# --- stage commands are added below, each calling one stage function --------------------------


# --- import: rebuy validate / import / import-campaign (rebuy.ingest, rebuy.campaign_import) ----------

_InFile = Annotated[Path | None, typer.Option(help="Overrides the path in the config.", dir_okay=False)]
_FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv or parquet; default: by file suffix.", case_sensitive=False)
]


def _import_command(
    write: bool, config: Path | None, data_dir: Path | None, as_of: str | None, customers: Path | None,
    orders: Path | None, events: Path | None, consent: Path | None, fmt: str | None,
) -> None:
    from rebuy.ingest import Sources, import_inputs, summary_table, validate_inputs

    cfg = load(config, data_dir)
    if fmt is not None and fmt.lower() not in {"csv", "parquet"}:
        raise typer.BadParameter(f"--format must be csv or parquet, not {fmt!r}")
    sources = Sources.from_config(
        cfg, customers=customers, orders=orders, events=events, consent_updates=consent,
        format=fmt.lower() if fmt else None,
    )
    try:
        result = (import_inputs if write else validate_inputs)(cfg, sources, parse_as_of(as_of))
    except RebuyError as exc:  # shown plainly under CliRunner too, not only through main()
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(2) from exc
    Console().print(summary_table(result))


@app.command("validate")
def validate_command(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_of: AsOfOpt = None,
    customers: _InFile = None, orders: _InFile = None, events: _InFile = None,
    consent: Annotated[Path | None, typer.Option(help="Consent updates; overrides the config.")] = None,
    fmt: _FormatOpt = None,
) -> None:
    """Check the shop's files against the data contract. Writes nothing."""
    _import_command(False, config, data_dir, as_of, customers, orders, events, consent, fmt)


@app.command("import")
def import_command(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_of: AsOfOpt = None,
    customers: _InFile = None, orders: _InFile = None, events: _InFile = None,
    consent: Annotated[Path | None, typer.Option(help="Consent updates; overrides the config.")] = None,
    fmt: _FormatOpt = None,
) -> None:
    """Validate the shop's files and write canonical Parquet into the data directory (all or nothing)."""
    _import_command(True, config, data_dir, as_of, customers, orders, events, consent, fmt)


def main() -> None:
    """Entry point: user-facing errors are printed plainly, with a non-zero exit and no traceback."""
    try:
        app()
    except (RebuyError, ConfigError) as exc:
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(2)


__all__ = ["AsOfOpt", "ConfigOpt", "DataDirOpt", "app", "load", "main", "parse_as_of"]
