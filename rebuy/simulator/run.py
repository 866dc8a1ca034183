"""`rebuy simulate`: write a simulated shop (tables, hidden truth, optionally a past campaign) to a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from rebuy.config import Config
from rebuy.simulator.params import SIM_OFFERS, SimConfig
from rebuy.simulator.shop import ShopSimulator, write_tables


@dataclass(frozen=True)
class SimulateResult:
    out: Path
    rows: dict[str, int]
    now: pd.Timestamp
    campaign_rows: int | None


def sim_config(cfg: Config, **overrides: object) -> SimConfig:
    """The SimConfig of a rebuy config ([simulator] section, offer costs), with CLI overrides (None = keep)."""
    base = SimConfig(
        customers=cfg.simulator.customers,
        months=cfg.simulator.months,
        seed=cfg.simulator.seed,
        start=cfg.simulator.start,
        offers=cfg.offers,
    )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def simulate_to_dir(
    cfg: Config,
    out: Path,
    *,
    customers: int | None = None,
    months: int | None = None,
    seed: int | None = None,
    events: bool = True,
    campaign: bool = False,
    campaign_days_before_end: int = 45,
) -> SimulateResult:
    """Simulate with rich progress, then write `<out>/<table>.parquet`, `<out>/truth/` and maybe `<out>/campaign/`.

    The campaign is a randomized past campaign (uniform over all offers, customers with an order)
    `campaign_days_before_end` days before the end, so its attribution window lies inside the history.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    sc = sim_config(cfg, customers=customers, months=months, seed=seed, events=events)
    sim = ShopSimulator(sc)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(f"simulating {sc.customers:,} customers", total=sc.days)
        tables = sim.run_history(progress=lambda done, total: bar.update(task, completed=done))
    out = Path(out)
    write_tables(tables, out)
    truth_dir = sim.save(out / "truth")
    sim.customer_truth().to_parquet(truth_dir / "customers_truth.parquet", index=False)
    n_campaign = None
    if campaign:
        at = sim.now - pd.Timedelta(days=campaign_days_before_end)
        decisions, export = sim.randomized_campaign(at, SIM_OFFERS, seed=sc.seed)
        cdir = out / "campaign"
        cdir.mkdir(parents=True, exist_ok=True)
        flat = decisions.copy()
        for col in ("distribution", "model_versions", "scores", "reasons"):
            flat[col] = [json.dumps(v, sort_keys=True) for v in flat[col]]
        flat.to_parquet(cdir / "decisions.parquet", index=False)
        export.to_parquet(cdir / "export.parquet", index=False)
        export.to_csv(cdir / "export.csv", index=False)
        n_campaign = len(export)
    return SimulateResult(
        out=out, rows={k: len(v) for k, v in tables.items()}, now=sim.now, campaign_rows=n_campaign
    )
