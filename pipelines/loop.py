"""The closed loop: rebuy decides, the simulated shop reacts, and the measured uplift meets the truth.

Each simulated day: orchestration passes on the configured schedule (`policy.schedule`: hourly by default,
so every customer is reached at a waking hour of their own timezone; scoring over HTTP like a real
deployment), the simulator steps one day with the messages those passes sent, the new orders and events
reach the online store through the push path, and models retrain on a schedule (the service reloads
its champions). At the end the uplift measured from the decision log (treatment vs randomized
control) is set beside the truth: the simulator's expected effect of the actions taken, on the same
customers, computed at decision time from its hidden state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import Config
from rebuy.errors import RebuyError


@dataclass
class LoopResult:
    days: int
    start: pd.Timestamp
    end: pd.Timestamp
    passes: list[dict[str, Any]]
    truth: pd.DataFrame  # one row per decision: decision_id, group, offer, p_offer, p_none
    retrains: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)


def messages_for_sim(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decisions the shop's customers actually receive: treated ones with an offer other than none."""
    sent = decisions.loc[(decisions["group"] == "treatment") & (decisions["offer"] != "none")]
    return sent[["customer_id", "decided_at", "offer", "channel"]].reset_index(drop=True)


def decision_truth(sim: Any, decisions: pd.DataFrame, at: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """The simulator's P(order within the attribution window) under the action taken and under none.

    Taken before the shop reacts, from the state at decision time, on each decision's own channel.
    """
    if not len(decisions):
        return pd.DataFrame(columns=["decision_id", "group", "offer", "p_offer", "p_none"])
    parts = []
    for channel, rows in decisions.groupby("channel", dropna=False):
        offers = sorted(set(rows["offer"]) | {"none"})
        ch = None if pd.isna(channel) or channel == "none" else str(channel)
        t = sim.truth(
            rows["customer_id"].tolist(),
            at,
            horizon_days=horizon_days,
            offers=offers,
            spend_days=None,
            channel=ch,
            paths=1,
        )  # probabilities are exact; skip MC margins
        p = np.array([t[f"p_order__{o}"].iloc[i] for i, o in enumerate(rows["offer"])])
        parts.append(
            pd.DataFrame(
                {
                    "decision_id": rows["decision_id"].to_numpy(),
                    "group": rows["group"].to_numpy(),
                    "offer": rows["offer"].to_numpy(),
                    "p_offer": p,
                    "p_none": t["p_order__none"].to_numpy(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def compare_with_truth(
    cfg: Config, decisions: pd.DataFrame, orders: pd.DataFrame, truth: pd.DataFrame, as_of: pd.Timestamp
) -> dict[str, Any]:
    """Measured (treatment − randomized control, matured decisions) against the true effect on the same rows.

    The true uplift is the mean over treated decisions of P(order | action taken) − P(order | none):
    the effect of the policy on the population it was randomized over.
    """
    from pipelines.uplift_report import attribute, compare

    if not len(decisions):
        return {"note": "no decisions"}
    rows = attribute(
        decisions.assign(segment=decisions.get("segment", "all")), orders, cfg.offers.attribution_days, as_of
    )
    rows = rows.loc[rows["matured"]].merge(
        truth[["decision_id", "p_offer", "p_none"]], on="decision_id", how="left"
    )
    treat = rows.loc[rows["group"] == "treatment"]
    ctrl = rows.loc[rows["group"].isin(["control", "holdout"])]
    measured = compare(treat, ctrl, cfg.offers.margin, 0.0)
    true_uplift = float((treat["p_offer"] - treat["p_none"]).mean()) if len(treat) else float("nan")
    ci = measured.get("conversion_ci", [float("nan"), float("nan")])
    return {
        "matured_decisions": len(rows),
        "treated": len(treat),
        "control": len(ctrl),
        "measured_uplift": measured.get("conversion_diff"),
        "measured_ci": ci,
        "true_uplift": true_uplift,
        "covered": bool(ci[0] <= true_uplift <= ci[1]) if len(treat) and len(ctrl) else None,
        "true_conversion_control": float(ctrl["p_none"].mean()) if len(ctrl) else None,
        "measured_conversion_control": measured.get("conversion_control"),
        "measured_conversion_treatment": measured.get("conversion_treatment"),
        "true_conversion_treatment": float(treat["p_offer"].mean()) if len(treat) else None,
    }


def pass_times(cfg: Config, day_start: pd.Timestamp) -> list[pd.Timestamp]:
    """The UTC instants of one day's passes: `start_hour + k * every_hours` (`policy.schedule`)."""
    sched = cfg.policy.schedule
    hours = range(sched.start_hour, 24, sched.every_hours) if sched.every_hours < 24 else [sched.start_hour]
    return [day_start + pd.Timedelta(hours=h) for h in hours]


def day_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One day's pass summaries added up: counts summed, per-key tallies merged, `as_of` of the first."""
    out: dict[str, Any] = {"as_of": summaries[0]["as_of"], "passes": len(summaries)}
    for s in summaries:
        for k, v in s.items():
            if k in ("as_of", "dry_run"):
                continue
            if isinstance(v, dict):
                acc = out.setdefault(k, {})
                for kk, vv in v.items():
                    acc[kk] = acc.get(kk, 0) + vv
            else:
                out[k] = out.get(k, 0) + v
    return out


def closed_loop(
    cfg: Config,
    sim: Any,
    tables: dict[str, pd.DataFrame],
    client: Any,
    days: int,
    *,
    retrain_every_days: int | None = None,
    retrain: Callable[[pd.Timestamp, dict[str, pd.DataFrame]], dict[str, Any]] | None = None,
    on_day: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[LoopResult, dict[str, pd.DataFrame]]:
    """Run `days` simulated days; returns the result and the grown canonical tables."""
    from features.store import materialize, merge_new_rows, push
    from pipelines.decision_log import engine_for, read_decisions
    from pipelines.orchestrator import run_pass

    start = sim.now
    passes: list[dict[str, Any]] = []
    truths: list[pd.DataFrame] = []
    retrains: list[dict[str, Any]] = []
    for d in range(days):
        day_start = sim.now
        results = [run_pass(cfg, as_of, tables, client) for as_of in pass_times(cfg, day_start)]
        decisions = pd.concat([r.decisions for r in results if len(r.decisions)] or [results[0].decisions])
        truths.append(decision_truth(sim, decisions, day_start, cfg.offers.attribution_days))
        new = sim.step(1, messages_for_sim(decisions) if len(decisions) else None)
        # the newsletter's sends reach most customers weekly: pushing them would recompute nearly every
        # customer's features that day; they join the tables here and the nightly refresh below
        push(cfg, {k: v for k, v in new.items() if k != "messages"}, sim.now, history=tables)
        tables = merge_new_rows(tables, new)
        # the nightly refresh a shop runs from cron: pushes only touch customers with new rows, so without
        # it a quiet customer's windowed counts (views in 24 h, orders in 30 d) would never slide
        materialize(cfg, sim.now, tables)
        summary = {
            "day": d + 1,
            **day_summary([r.summary() for r in results]),
            "new_orders": len(new["orders"]),
        }
        passes.append(summary)
        if retrain is not None and retrain_every_days and (d + 1) % retrain_every_days == 0 and d + 1 < days:
            retrains.append({"day": d + 1, **retrain(sim.now, tables)})
        if on_day is not None:
            on_day(d, summary)
    engine = engine_for(cfg.decision_log_url)
    try:
        with engine.connect() as conn:
            logged = read_decisions(conn)
    finally:
        engine.dispose()
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame()
    result = LoopResult(days=days, start=start, end=sim.now, passes=passes, truth=truth, retrains=retrains)
    if len(logged):
        logged = (
            logged.loc[logged["decision_id"].isin(truth["decision_id"])] if len(truth) else logged.iloc[:0]
        )
        result.comparison = compare_with_truth(cfg, logged, tables["orders"], truth, sim.now)
    return result, tables


# --- a real service for the loop and the demo -----------------------------------------------------------


def service_ready(url: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_service(
    cfg: Config, config_path: Path | None, *, startup_timeout: float = 600.0, log_path: Path | None = None
) -> Iterator[str]:
    """`rebuy serve` in a child process on 127.0.0.1 for the duration of the block; yields its URL.

    An already-running service at the configured URL is used as it is (and left running).
    """
    url = cfg.serving_url
    if service_ready(url):
        yield url
        return
    cmd = [sys.executable, "-m", "cli", "serve", "--data-dir", str(cfg.paths.data_dir)]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    log_path = log_path or cfg.paths.runtime_dir / "service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not service_ready(url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RebuyError(
                    f"the prediction service exited during start-up (code {proc.returncode}); "
                    f"log {log_path}:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise RebuyError(
                    f"the prediction service was not ready within {startup_timeout:.0f} s; see {log_path}"
                )
            time.sleep(0.5)
        yield url
    finally:
        from serving.server import stop_process_group

        stop_process_group(proc)


def _secret_value(cfg: Config, name: str) -> str | None:
    from rebuy.secrets import secret

    value = secret(cfg, name)
    return value.get_secret_value() if value is not None else None


def reload_service(cfg: Config, url: str) -> dict[str, Any]:
    """Ask the service to pick up new champions (the secret `admin_token`)."""
    import httpx

    token = _secret_value(cfg, "admin_token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(f"{url}/admin/reload", headers=headers, json={}, timeout=120)
    if r.status_code != 200:
        raise RebuyError(f"service reload failed: HTTP {r.status_code}: {r.text[:300]}")
    return dict(r.json())


def retrain_and_reload(
    cfg: Config, now: pd.Timestamp, grown: dict[str, pd.DataFrame], url: str
) -> dict[str, Any]:
    """The loop's scheduled retraining: the grown tables become canonical, every model retrains through its
    champion gate, the offer model learns from the randomized decisions logged so far (when there are
    enough), and the service reloads whatever became champion."""
    from rebuy.ingest import write_canonical
    from training.offer import train_offer
    from training.run import train_command

    write_canonical(grown, cfg.paths.data_dir)
    out: dict[str, Any] = {"trained": sorted(train_command(cfg, "all", now, show_progress=False))}
    try:
        offer = train_offer(cfg, now)
        out["offer"] = {k: offer[k] for k in ("version", "promoted", "reason") if k in offer}
    except RebuyError as exc:  # too few matured, randomized decisions yet: the loop goes on without it
        out["offer"] = f"not trained: {str(exc).splitlines()[0]}"
    out["reload"] = reload_service(cfg, url)
    return out


def run_loop_command(
    cfg: Config, config_path: Path | None, sim_dir: Path | None, *, days: int, retrain_every_days: int | None
) -> dict[str, Any]:
    """`rebuy loop`: continue the saved simulator from where it stopped, against a running service
    (started here when none answers), and save the simulator and the grown tables afterwards."""
    from pipelines.score_client import HttpScoreClient
    from rebuy.ingest import read_canonical, write_canonical
    from rebuy.simulator import ShopSimulator

    sim_dir = sim_dir or cfg.paths.data_dir / "raw" / "truth"
    if not sim_dir.is_dir():
        raise RebuyError(
            f"no saved simulator at {sim_dir}; run `rebuy simulate --out <dir>` and pass --sim <dir>/truth"
        )
    sim = ShopSimulator.load(sim_dir)
    tables = read_canonical(cfg.paths.data_dir)
    with running_service(cfg, config_path) as url:

        def retrain(now: pd.Timestamp, grown: dict[str, pd.DataFrame]) -> dict[str, Any]:
            return retrain_and_reload(cfg, now, grown, url)

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        client = HttpScoreClient(url, api_key=_secret_value(cfg, "api_key"))
        try:
            with Progress(
                TextColumn("simulated days"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task("days", total=days, last="")
                result, tables = closed_loop(
                    cfg,
                    sim,
                    tables,
                    client,
                    days,
                    retrain_every_days=retrain_every_days,
                    retrain=retrain if _secret_value(cfg, "admin_token") else None,
                    on_day=lambda d, s: bar.update(
                        task, completed=d + 1, last=f"decided {s['decided']}, sent {s['sent']}"
                    ),
                )
        finally:
            client.close()
    write_canonical(tables, cfg.paths.data_dir)
    sim.save(sim_dir)
    return {
        "days": days,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "retrains": len(result.retrains),
        **result.comparison,
    }
