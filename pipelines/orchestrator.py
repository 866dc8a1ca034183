"""One orchestration pass: candidates -> scores -> policy layer -> decision log + outbox -> sink.

Thin by design (DESIGN.md): the decisions are made by the pure modules (`triggers`, `policy_layer`,
`training.policy`); this module only sequences them around the I/O and makes the sequence crash
safe. A pass holds an exclusive file lock; its decisions and outbox rows commit in one
transaction; delivery marks a message sent only after the sink has it. A crash at any point is
repaired by running the same pass again: decided episodes are recognised by their ids and skipped,
pending messages are delivered, and the sinks drop what they already hold.

Schedule (`policy.schedule`): run a pass every hour — `rebuy loop` does; for `rebuy run` a cron line such as
`0 * * * * rebuy run --data-dir /srv/rebuy` — so that every customer is reached at a waking hour of their own
timezone (quiet hours are local; a single daily pass at a fixed UTC hour falls into some customers' night
every day). A customer decided by one pass rests for `spacing_hours` (24 by default: one decision per
customer per day), and the model audiences, which move slowly, are scored once per customer per local day
in their first waking slot (`clock.daily_slot`), so hourly passes cost about what one daily pass did. A shop
that runs one pass a day sets `every_hours = 24` (then every pass scores every buyer's audiences).

`checkpoint(step)` is called after each step ("decided", "logged", "sink_written",
"before_mark_sent"); the crash tests raise from it to fail deterministically at each one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pipelines import decision_log as dl
from pipelines.clock import daily_slot, in_quiet_hours, local_clock
from pipelines.policy_layer import MESSAGE_CHANNELS, apply_policy, eligibility, resting
from pipelines.score_client import ScoreClient, score_frame
from pipelines.sinks import JsonlSink, Sink, make_sink, sink_path
from pipelines.triggers import (
    AUDIENCE_KINDS,
    all_rule_candidates,
    audience_pool,
    decision_id,
    order_summary,
    select_candidates,
)
from rebuy.config import Config
from rebuy.errors import RebuyError

Checkpoint = Callable[[str], None]
# messages per sink write + mark-sent transaction: each costs an fsync on both sides
DELIVERY_BATCH = 5000


class LockedError(RebuyError):
    """Another pass (or a forget) is running on this data directory."""


@contextmanager
def pass_lock(cfg: Config) -> Iterator[Path]:
    """An exclusive, non-blocking flock; the OS releases it if the holder dies (even by SIGKILL)."""
    path = cfg.paths.runtime_dir / "pass.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockedError(
                f"another rebuy pass holds {path}; wait for it to finish (a crashed pass releases the lock)"
            ) from exc
        yield path
    finally:
        os.close(fd)


@dataclass
class PassResult:
    """What a pass did (or, with dry_run, would do)."""

    as_of: pd.Timestamp
    dry_run: bool
    scored: int
    candidates: int
    already_decided: int
    decisions: pd.DataFrame
    skipped: pd.DataFrame
    queued: int = 0
    sent: int = 0
    # wall seconds per step: scoring, candidates, policy, log, deliver
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        d = self.decisions
        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "scored": self.scored,
            "candidates": self.candidates,
            "already_decided": self.already_decided,
            "decided": len(d),
            "queued": self.queued,
            "sent": self.sent,
            "by_group": d["group"].value_counts().sort_index().to_dict() if len(d) else {},
            "by_offer": d.loc[d["group"] == "treatment", "offer"].value_counts().sort_index().to_dict()
            if len(d)
            else {},
            "by_campaign": d["campaign"].value_counts().sort_index().to_dict() if len(d) else {},
            "skipped": self.skipped["reason"].value_counts().sort_index().to_dict()
            if len(self.skipped)
            else {},
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _noop(step: str) -> None:
    return None


def _sqlite_missing(url: str) -> bool:
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()


def _read_state(cfg: Config, dry_run: bool) -> tuple[pd.DataFrame, set[str]]:
    """Decision history and forget list; a dry run never creates the database."""
    url = cfg.decision_log_url
    if dry_run and _sqlite_missing(url):
        return pd.DataFrame(columns=dl.HISTORY_COLUMNS).astype({"decided_at": "datetime64[ns, UTC]"}), set()
    engine = dl.engine_for(url, create=not dry_run)
    try:
        with engine.connect() as conn:
            if dry_run and not sa.inspect(conn).has_table("decisions"):
                return pd.DataFrame(columns=dl.HISTORY_COLUMNS).astype(
                    {"decided_at": "datetime64[ns, UTC]"}
                ), set()
            return dl.history(conn), dl.forgotten_hashes(conn)
    finally:
        engine.dispose()


def _progress(show: bool) -> Any:
    if not show:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def run_pass(
    cfg: Config,
    as_of: pd.Timestamp,
    tables: dict[str, pd.DataFrame],
    client: ScoreClient,
    dry_run: bool = False,
    *,
    sink: Sink | None = None,
    checkpoint: Checkpoint = _noop,
    show_progress: bool = False,
) -> PassResult:
    """One pass at `as_of` over canonical `tables`, scoring through `client`.

    Safe to rerun at any time with the same arguments: nothing already decided is decided again and
    nothing already in the sink is sent again. `dry_run` decides and reports; writes and sends nothing.
    """
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    lock = nullcontext() if dry_run else pass_lock(cfg)
    clock = time.perf_counter
    timings: dict[str, float] = {}
    with lock, _progress(show_progress) as progress:
        t0 = clock()
        history, forgotten = _read_state(cfg, dry_run)
        salt = cfg.policy.holdout_salt
        ids = tables["customers"]["customer_id"].astype(str)
        excluded = {c for c in ids if dl.forget_hash(c, salt) in forgotten} if forgotten else set()

        summary = order_summary(tables["orders"], as_of)
        rules = all_rule_candidates(cfg, as_of, tables, summary)
        rule = select_candidates(cfg, as_of, tables, None, exclude=excluded, rules=rules, summary=summary)
        pool = sorted(scoring_pool(cfg, as_of, tables, rule, history) - excluded)
        timings["read_state_and_rules"] = clock() - t0
        task = progress.add_task("scoring", total=len(pool)) if progress else None
        t0 = clock()
        scores = score_frame(
            client,
            pool,
            as_of,
            batch_size=min(cfg.policy.score_batch_size, cfg.serving.max_batch),  # the service refuses more
            concurrency=cfg.policy.score_concurrency,
            progress=(lambda n: progress.advance(task, n)) if progress else None,
        )
        timings["scoring"] = clock() - t0
        t0 = clock()
        cands = select_candidates(cfg, as_of, tables, scores, exclude=excluded, rules=rules, summary=summary)
        n_cands = len(cands)
        if n_cands:
            dids = [
                decision_id(c, k, e)
                for c, k, e in zip(cands["customer_id"], cands["campaign"], cands["episode"], strict=True)
            ]
            done = set(history["decision_id"]) & set(dids)
            keep = [d not in done for d in dids]
            cands = cands.loc[keep].reset_index(drop=True)
            cands["decision_id"] = [d for d, k in zip(dids, keep, strict=True) if k]
        else:
            done = set()
        timings["candidates"] = clock() - t0
        t0 = clock()
        outcome = apply_policy(cfg, as_of, cands, scores, tables, history)
        timings["policy"] = clock() - t0
        checkpoint("decided")
        result = PassResult(
            as_of=as_of,
            dry_run=dry_run,
            scored=len(scores),
            candidates=n_cands,
            already_decided=len(done),
            decisions=outcome.decisions,
            skipped=outcome.skipped,
            timings=timings,
        )
        if dry_run:
            result.queued = int(sum(dl.is_message(r) for r in dl.records(outcome.decisions)))
            return result
        engine = dl.engine_for(cfg.decision_log_url)
        try:
            t0 = clock()
            with engine.begin() as conn:
                result.queued = dl.log_decisions(conn, outcome.decisions)
            timings["log"] = clock() - t0
            checkpoint("logged")
            t0 = clock()
            result.sent = deliver(
                engine, sink or make_sink(cfg), as_of, checkpoint=checkpoint, progress=progress
            )
            timings["deliver"] = clock() - t0
        finally:
            engine.dispose()
    return result


def scoring_pool(
    cfg: Config,
    as_of: pd.Timestamp,
    tables: dict[str, pd.DataFrame],
    rule: pd.DataFrame,
    history: pd.DataFrame,
) -> set[str]:
    """The customers this pass must score: those it may still decide, and no others.

    Rule candidates whose episode is not decided yet and who are eligible now (consent, quiet hours, rest),
    plus the model-audience pool (customers with an order) in their daily slot (`clock.daily_slot`), when
    they are not resting and, if every trigger messages, not in quiet hours. With hourly passes this scores
    each customer's audiences once a local day instead of 24 times, and never someone the pass would skip.
    """
    if len(rule):
        dids = [
            decision_id(c, k, e)
            for c, k, e in zip(rule["customer_id"], rule["campaign"], rule["episode"], strict=True)
        ]
        open_ = rule.loc[~pd.Series(dids, index=rule.index).isin(set(history["decision_id"]))]
        ok = eligibility(cfg, as_of, open_, tables, history) == "" if len(open_) else pd.Series(dtype=bool)
        pool = set(open_.loc[ok, "customer_id"])
    else:
        pool = set()
    if not any(t.kind in AUDIENCE_KINDS for t in cfg.policy.triggers):
        return pool
    buyers = set(audience_pool(tables, as_of))
    cust = tables["customers"].loc[tables["customers"]["customer_id"].isin(buyers)]
    sched, quiet = cfg.policy.schedule, cfg.policy.caps.quiet_hours
    due = daily_slot(as_of, cust, quiet, sched.every_hours).to_numpy()
    if all(t.channel in MESSAGE_CHANNELS for t in cfg.policy.triggers):
        hours = local_clock(as_of, cust)["local_hour"]
        due &= ~in_quiet_hours(hours, quiet).to_numpy()
    return pool | (set(cust.loc[due, "customer_id"]) - resting(history, as_of, sched.spacing_hours))


def deliver(
    engine: sa.Engine, sink: Sink, at: pd.Timestamp, *, checkpoint: Checkpoint = _noop, progress: Any = None
) -> int:
    """Move every pending outbox message to the sink, batch by batch; returns how many were marked sent."""
    sent = 0
    with engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count()).select_from(dl.OUTBOX).where(dl.OUTBOX.c.status == "pending")
        ).scalar_one()
    task = progress.add_task("delivering", total=total) if progress is not None and total else None
    last: str | None = None
    while True:
        with engine.connect() as conn:
            batch = dl.pending(conn, limit=DELIVERY_BATCH, after=last)
        if not batch:
            return sent
        last = batch[-1][0]
        held = sink.send(batch)
        checkpoint("sink_written")
        checkpoint("before_mark_sent")
        with engine.begin() as conn:
            dl.mark_sent(conn, held, at)
        sent += len(held)
        if task is not None:
            progress.advance(task, len(held))
        if len(held) < len(batch):
            raise RebuyError(f"the sink accepted {len(held)} of {len(batch)} messages; the rest stay pending")


def forget(cfg: Config, customer_id: str, as_of: pd.Timestamp) -> dict[str, Any]:
    """Right to be forgotten: pseudonymise the decision log and the file sink, cancel undelivered
    messages, put the customer on the forget list every pass checks, and drop them from the online
    store when the features stage offers a way to."""
    with pass_lock(cfg):
        engine = dl.engine_for(cfg.decision_log_url)
        try:
            with engine.begin() as conn:
                out: dict[str, Any] = dl.forget_customer(conn, customer_id, cfg.policy.holdout_salt, as_of)
        finally:
            engine.dispose()
        alias = dl.pseudonym(customer_id, cfg.policy.holdout_salt)
        out["sink_messages_pseudonymised"] = 0
        if cfg.sink.kind == "jsonl":
            out["sink_messages_pseudonymised"] = JsonlSink(sink_path(cfg)).rewrite(
                lambda r: {**r, "customer_id": alias} if r.get("customer_id") == customer_id else r
            )
        out["online_store"] = _forget_online(cfg, customer_id)
    return out


def _forget_online(cfg: Config, customer_id: str) -> str:
    """Delete the customer's online features and offline snapshots through the features stage.

    Every step of `forget` is idempotent, so if this one fails the command can simply be rerun.
    """
    from features.online import forget_customers
    from features.store import forget_offline, has_online_store, online_path

    if not has_online_store(cfg):
        forget_offline(cfg, [customer_id])
        return f"no online store at {online_path(cfg)}; offline snapshots cleaned"
    return f"removed {forget_customers(cfg, [customer_id])} online rows and the offline snapshots"


def run(cfg: Config, as_of: pd.Timestamp, dry_run: bool = False) -> PassResult:
    """`rebuy run`: a pass over the canonical tables against the configured scoring service."""
    from pipelines.score_client import HttpScoreClient
    from rebuy.ingest import read_canonical

    tables = read_canonical(cfg.paths.data_dir)
    client = HttpScoreClient(cfg.serving_url)
    try:
        return run_pass(cfg, as_of, tables, client, dry_run, show_progress=True)
    finally:
        client.close()
