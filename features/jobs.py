"""What `rebuy features apply|build|materialize|push` run: read canonical tables, call the store, show progress.

One function per command, so the CLI only parses arguments. Progress goes to stderr (rich).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from rebuy.config import Config
from rebuy.errors import DataError


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        yield progress


def _step(progress: Progress, text: str) -> TaskID:
    return progress.add_task(text, total=1)


def _read(cfg: Config, progress: Progress) -> dict[str, pd.DataFrame]:
    from rebuy.ingest import read_canonical

    task = _step(progress, "read canonical tables")
    tables = read_canonical(cfg.paths.data_dir)
    progress.update(task, completed=1)
    return tables


def apply_job(cfg: Config) -> dict[str, object]:
    """Write feature_store.yaml, register the definitions, create the online tables."""
    from features.store import apply

    with _progress() as progress:
        task = _step(progress, "feast apply")
        store = apply(cfg)
        progress.update(task, completed=1)
    return {
        "repo": str(cfg.paths.feast_dir),
        "feature_services": sorted(s.name for s in store.list_feature_services()),
    }


def build_job(cfg: Config, as_of: pd.Timestamp) -> dict[str, object]:
    """Offline feature snapshots at the training cutoffs and at `as_of` (the latest)."""
    from features.store import apply, build
    from features.training_set import cutoff_grid, data_end

    with _progress() as progress:
        tables = _read(cfg, progress)
        horizons = {cfg.horizons.churn_days, cfg.horizons.repurchase_days, cfg.horizons.value_days}
        end = min(as_of, data_end(tables))  # labels are known up to the latest row, as in `rebuy train`
        grid = {c for h in horizons for c in cutoff_grid(cfg, end, horizon_days=h)}
        snapshots = [*sorted(grid), as_of]  # every model's training cutoffs, then the latest
        apply(cfg)
        task = progress.add_task(f"features at {len(snapshots)} snapshots", total=len(snapshots))
        rows = 0
        for snap in snapshots:  # one snapshot at a time keeps memory flat
            rows += len(build(cfg, tables, [snap]))
            progress.advance(task)
    return {"snapshots": len(snapshots), "rows": rows, "offline": str(cfg.paths.feast_dir / "offline")}


def materialize_job(cfg: Config, as_of: pd.Timestamp, incremental: bool) -> dict[str, object]:
    """Features as of `as_of` into the online store (full, or only customers with new rows)."""
    from features.store import materialize

    with _progress() as progress:
        tables = _read(cfg, progress)
        out = materialize(cfg, as_of, tables, incremental=incremental, progress=progress)
    return {"as_of": as_of.isoformat(), "incremental": incremental, **out}


def push_job(cfg: Config, now: pd.Timestamp, orders: Path | None, events: Path | None) -> dict[str, object]:
    """New canonical-form orders/events (Parquet) pushed to the affected customers' online features."""
    from features.store import push
    from rebuy.ingest import conform

    new: dict[str, pd.DataFrame] = {}
    for table, path in (("orders", orders), ("events", events)):
        if path is not None:
            if not path.is_file():
                raise DataError("file not found", file=str(path), hint="pass an existing Parquet file")
            new[table] = conform(table, pd.read_parquet(path))
    if not new:
        raise DataError("nothing to push", hint="pass --orders and/or --events")
    with _progress() as progress:
        task = _step(progress, "push")
        n = push(cfg, new, now)
        progress.update(task, completed=1)
    return {"customers": n, "now": now.isoformat()}
