"""What the orchestrator may do with each candidate, and the draw that decides it (pure).

Order matters for measuring uplift honestly:

1. **Eligibility now** — consent on the campaign's channel as of the pass time (customer consents,
   overridden by the latest consent update at or before it) and quiet hours in the customer's own
   timezone, and rest: a customer decided by another pass within `policy.schedule.spacing_hours` is not
   decided again (one decision per customer per day with hourly passes). None of these depends on
   which group past decisions fell into, so they are applied *before* randomisation: ineligible
   candidates are skipped (not decided; a later pass retries).
2. **Assignment** — a global holdout (hash of salt + customer id: stable over time and across
   campaigns) and a per-campaign control group (hash of salt + campaign + customer id). Both are
   logged with offer `none` and propensity 1.
3. **Treatment** — frequency caps (per channel and across channels, rolling windows from the
   decision log) and the offer budget restrict the allowed offers; a capped customer stays in the
   treatment group with only `none` allowed (intent to treat: caps depend on past messages, which
   differ between groups, so excluding capped customers would bias treatment against control).
   Treated candidates are processed in order of their best estimated margin (ties by decision id),
   so a scarce budget goes where it is expected to earn most, and the order is reproducible.
   Then the policy function turns the estimates into a distribution over the allowed offers and
   draws with a generator seeded by the decision id; the decision records the chosen offer's
   propensity and the whole distribution.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.clock import in_quiet_hours, local_clock
from pipelines.decision_log import records
from pipelines.triggers import decision_id
from rebuy.config import CapsConfig, Config
from rebuy.errors import RebuyError
from training import policy as offer_policy

DECISION_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "customer_id",
    "decided_at",
    "trigger",
    "campaign",
    "episode",
    "offer",
    "channel",
    "group",
    "propensity",
    "distribution",
    "model_versions",
    "scores",
    "reasons",
    "segment",
    "note",
)
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "sms", "push")


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from text, identical in every process, machine and run."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_ids: Iterable[str], share: float, salt: str) -> np.ndarray:
    """Global holdout membership: the same customers whatever the campaign, the day or the process."""
    return np.array([unit_hash(salt, "holdout", str(c)) < share for c in customer_ids], dtype=bool)


def in_control(
    customer_ids: Iterable[str], campaigns: Iterable[str], shares: Iterable[float], salt: str
) -> np.ndarray:
    """Per-campaign control membership, independent of the holdout hash (different key)."""
    return np.array(
        [
            unit_hash(salt, "control", str(k), str(c)) < s
            for c, k, s in zip(customer_ids, campaigns, shares, strict=True)
        ],
        dtype=bool,
    )


def consent_as_of(customers: pd.DataFrame, updates: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Consent per customer and message channel at `as_of` (index customer_id, columns email/sms/push).

    The customers table gives the starting state; the latest update at or before `as_of` wins.
    """
    out = pd.DataFrame(
        {ch: customers[f"consent_{ch}"].astype(bool).to_numpy() for ch in MESSAGE_CHANNELS},
        index=pd.Index(customers["customer_id"], name="customer_id"),
    )
    upd = updates.loc[updates["changed_at"] <= as_of]
    if len(upd):
        latest = upd.sort_values("changed_at", kind="stable").groupby(["customer_id", "channel"]).tail(1)
        latest = latest.loc[latest["customer_id"].isin(out.index) & latest["channel"].isin(MESSAGE_CHANNELS)]
        for ch, part in latest.groupby("channel"):
            out.loc[part["customer_id"].to_numpy(), ch] = part["consent"].astype(bool).to_numpy()
    return out


def other_sends(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, caps: CapsConfig) -> pd.DataFrame:
    """The shop's own sends near `as_of` (`messages` not sent by rebuy) in the decision log's shape, for
    the caps; rebuy's sends are counted from its decision log only, never twice."""
    m = tables.get("messages")
    cols = ["customer_id", "decided_at", "channel", "group", "offer"]
    if m is None or not len(m):
        return pd.DataFrame(columns=cols)
    days = max([d for _, d in caps.per_channel.values()] + [caps.all_channels[1]])
    near = (m["sent_at"] - as_of).abs() < pd.Timedelta(days=days)
    m = m.loc[near & (m["source"] != "rebuy").to_numpy()]
    return pd.DataFrame(
        {
            "customer_id": m["customer_id"].astype(object).to_numpy(),
            "decided_at": m["sent_at"].reset_index(drop=True),
            "channel": m["channel"].astype(object).to_numpy(),
            "group": "treatment",
            "offer": m["source"].astype(object).to_numpy(),
        }
    )


def message_counts(history: pd.DataFrame, as_of: pd.Timestamp, caps: CapsConfig) -> pd.DataFrame:
    """Messages near `as_of` per customer: one column per capped channel plus `all`.

    A message counts when it lies strictly within one window length of `as_of` on *either* side, so
    a cap holds in every rolling window even when passes run out of time order (a rerun of an earlier
    day); in normal forward operation no later messages exist and this is the trailing window.
    """
    sent = history.loc[
        (history["group"] == "treatment")
        & (history["offer"] != "none")
        & history["channel"].isin(MESSAGE_CHANNELS)
    ]
    sent = sent.assign(decided_at=pd.to_datetime(sent["decided_at"], utc=True))
    cols: dict[str, pd.Series] = {}
    for ch, (_, days) in caps.per_channel.items():
        w = pd.Timedelta(days=days)
        s = sent.loc[(sent["channel"] == ch) & ((sent["decided_at"] - as_of).abs() < w)]
        cols[ch] = s.groupby("customer_id").size()
    w_all = pd.Timedelta(days=caps.all_channels[1])
    cols["all"] = sent.loc[(sent["decided_at"] - as_of).abs() < w_all].groupby("customer_id").size()
    return pd.DataFrame(cols).fillna(0).astype(int)


def capped(
    customer_id: str, channel: str, counts: pd.DataFrame | dict[str, dict[str, int]], caps: CapsConfig
) -> str | None:
    """Which cap one more message on `channel` would break, or None (`counts` from `message_counts`,
    as a frame or as its `to_dict("index")`)."""
    table: Any = counts.to_dict("index") if isinstance(counts, pd.DataFrame) else counts
    row = table.get(customer_id)
    if channel not in MESSAGE_CHANNELS or row is None:
        return None
    if channel in caps.per_channel and row.get(channel, 0) + 1 > caps.per_channel[channel][0]:
        return f"cap:{channel}"
    if row.get("all", 0) + 1 > caps.all_channels[0]:
        return "cap:all"
    return None


@dataclass(frozen=True)
class PolicyOutcome:
    """Decisions to log (`DECISION_COLUMNS`) and the candidates not decided, with why."""

    decisions: pd.DataFrame
    skipped: pd.DataFrame


def resting(history: pd.DataFrame, as_of: pd.Timestamp, hours: int) -> set[str]:
    """Customers decided (any group, any campaign) less than `hours` before or after `as_of`, by another pass.

    Either side, like the caps, so "at most one decision per customer per `hours`" holds whatever order
    passes run in; decisions made at `as_of` itself are this very pass (a rerun), which must stay idempotent.
    """
    if hours <= 0 or not len(history):
        return set()
    at = pd.to_datetime(history["decided_at"], utc=True)
    near = ((at - as_of).abs() < pd.Timedelta(hours=hours)) & (at != as_of)
    return set(history.loc[near.to_numpy(), "customer_id"])


def eligibility(
    cfg: Config,
    as_of: pd.Timestamp,
    candidates: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    history: pd.DataFrame | None = None,
) -> pd.Series:
    """Per candidate: "" if it may be decided now, else the reason (`no_consent:<ch>`, `quiet_hours`,
    `rested` — decided by another pass within `policy.schedule.spacing_hours`, when `history` is given)."""
    consent = consent_as_of(tables["customers"], tables["consent_updates"], as_of)
    reason = pd.Series("", index=candidates.index, dtype=object)
    if history is not None:
        rested = resting(history, as_of, cfg.policy.schedule.spacing_hours)
        reason[candidates["customer_id"].isin(rested).to_numpy()] = "rested"
    for ch in MESSAGE_CHANNELS:
        on_ch = candidates["channel"] == ch
        ok = consent[ch].reindex(candidates["customer_id"]).fillna(False).to_numpy(dtype=bool)
        reason[on_ch.to_numpy() & ~ok & (reason == "").to_numpy()] = f"no_consent:{ch}"
    cust = tables["customers"].loc[tables["customers"]["customer_id"].isin(candidates["customer_id"])]
    clock = local_clock(as_of, cust).set_index("customer_id")["local_hour"]
    hours = clock.reindex(candidates["customer_id"]).fillna(as_of.hour)
    quiet = in_quiet_hours(pd.Series(hours.to_numpy(), index=candidates.index), cfg.policy.caps.quiet_hours)
    messaging = candidates["channel"].isin(MESSAGE_CHANNELS)
    reason[(reason == "") & quiet & messaging] = "quiet_hours"
    return reason


def apply_policy(
    cfg: Config,
    as_of: pd.Timestamp,
    candidates: pd.DataFrame,
    scores: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    history: pd.DataFrame,
) -> PolicyOutcome:
    """Decide every eligible candidate (see the module docstring for the order of the steps).

    `candidates` come from `triggers.select_candidates` (already without decided episodes and
    forgotten customers; a `decision_id` column, when present, must hold `triggers.decision_id` of each
    row), `scores` from `score_client.score_frame`, `history` is the decision log
    (`customer_id, decided_at, channel, group, offer`). Deterministic: same inputs, same output.
    """
    cands = candidates.copy()
    if "decision_id" not in cands:  # a pass hands them over already computed
        cands["decision_id"] = [
            decision_id(c, k, e)
            for c, k, e in zip(cands["customer_id"], cands["campaign"], cands["episode"], strict=True)
        ]
    reason = eligibility(cfg, as_of, cands, tables, history) if len(cands) else pd.Series(dtype=object)
    skipped = cands.loc[reason != "", ["customer_id", "trigger", "campaign", "decision_id"]].assign(
        reason=reason[reason != ""]
    )
    cands = cands.loc[reason == ""].reset_index(drop=True)
    sc = scores.set_index("customer_id")
    missing = sorted(set(cands["customer_id"]) - set(sc.index))
    if missing:
        raise RebuyError(f"{len(missing)} candidates have no scores (e.g. {missing[:5]}); score them first")
    shares = {t.campaign: t.control_share for t in cfg.policy.triggers}
    holdout = in_holdout(cands["customer_id"], cfg.policy.holdout_share, cfg.policy.holdout_salt)
    control = (
        in_control(
            cands["customer_id"],
            cands["campaign"],
            [shares.get(k, 0.0) for k in cands["campaign"]],
            cfg.policy.holdout_salt,
        )
        & ~holdout
    )
    cands["group"] = np.where(holdout, "holdout", np.where(control, "control", "treatment"))

    s = sc.reindex(cands["customer_id"]).reset_index()
    if cfg.policy.caps.count_newsletters:
        others = other_sends(tables, as_of, cfg.policy.caps)
        if len(others):  # (pandas warns on concatenating an empty frame, and it adds nothing)
            history = others if not len(history) else pd.concat([history, others], ignore_index=True)
    decisions = _decide(cfg, as_of, cands, s, history, tables.get("messages"))
    return PolicyOutcome(
        decisions=decisions.sort_values("decision_id").reset_index(drop=True),
        skipped=skipped.reset_index(drop=True),
    )


def recently_contacted(
    history: pd.DataFrame, as_of: pd.Timestamp, days: int, messages: pd.DataFrame | None = None
) -> set[str]:
    """Customers sent a message (rebuy's own treatment sends, or any row of `messages`) in the `days`
    before `as_of`: they explore at `offers.explore_recent_share` only."""
    if days <= 0:
        return set()
    lo = as_of - pd.Timedelta(days=days)
    out: set[str] = set()
    if len(history):
        at = pd.to_datetime(history["decided_at"], utc=True)
        sent = (history["group"] == "treatment") & (history["offer"] != "none") & (at > lo) & (at < as_of)
        out |= set(history.loc[sent.to_numpy(), "customer_id"])
    if messages is not None and len(messages):
        at = pd.to_datetime(messages["sent_at"], utc=True)
        out |= set(messages.loc[((at > lo) & (at <= as_of)).to_numpy(), "customer_id"])
    return out


def exploration_shares(customer_ids: pd.Series, recent: set[str], offers: Any) -> np.ndarray:
    """Per candidate: `offers.exploration_share`, or `offers.explore_recent_share` if recently contacted."""
    is_recent = customer_ids.isin(recent).to_numpy()
    return np.where(is_recent, float(offers.explore_recent_share), float(offers.exploration_share))


def capped_batch(
    customer_ids: pd.Series, channels: pd.Series, counts: pd.DataFrame, caps: CapsConfig
) -> np.ndarray:
    """`capped` for many candidates at once: per row "" or the cap one more message would break."""
    c = counts.reindex(customer_ids.to_numpy()).fillna(0).astype(int)
    ch = channels.to_numpy(dtype=object)
    out = np.full(len(ch), "", dtype=object)
    known = customer_ids.isin(counts.index).to_numpy() & np.isin(ch, MESSAGE_CHANNELS)
    over_all = known & (c["all"].to_numpy() + 1 > caps.all_channels[0]) if "all" in c else known & False
    out[over_all] = "cap:all"
    for name, (limit, _) in caps.per_channel.items():
        if name in c:
            out[known & (ch == name) & (c[name].to_numpy() + 1 > limit)] = f"cap:{name}"
    return out


def _decide(
    cfg: Config,
    as_of: pd.Timestamp,
    cands: pd.DataFrame,
    s: pd.DataFrame,
    history: pd.DataFrame,
    messages: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Caps, budget and the seeded draw for every candidate at once (`training.policy.decide_batch`).

    Treated candidates are ordered by their best estimated margin (ties by decision id) so a scarce budget
    goes where it is expected to earn most; the result equals deciding them one by one in that order.
    """
    n = len(cands)
    if not n:
        return pd.DataFrame(columns=list(DECISION_COLUMNS))
    names = sorted(o for o in cfg.offers.catalogue if o != "none")
    ests = s["offer_estimates"].tolist()
    margins = np.array([[e.get(o, np.nan) for o in names] for e in ests], dtype=np.float64).reshape(n, -1)
    offer_sets = [set(o) for o in cands["offers"]]
    allowed = np.array([[o in os for o in names] for os in offer_sets], dtype=bool).reshape(n, -1)
    allowed &= ~np.isnan(margins)  # an offer the service did not estimate is not a candidate
    treated = (cands["group"] == "treatment").to_numpy()
    counts = message_counts(history, as_of, cfg.policy.caps)
    note = capped_batch(cands["customer_id"], cands["channel"], counts, cfg.policy.caps)
    allowed[~treated | (note != "")] = False

    best = np.array([max(e.values(), default=0.0) for e in ests], dtype=np.float64)
    dids = cands["decision_id"].tolist()
    order = np.array(sorted(range(n), key=lambda i: (-best[i], dids[i])), dtype=np.int64)
    recent = recently_contacted(history, as_of, cfg.offers.explore_rest_days, messages)
    explore = exploration_shares(cands["customer_id"], recent, cfg.offers)
    res = offer_policy.decide_batch(
        np.nan_to_num(margins[order], nan=0.0),
        allowed[order],
        cfg.offers,
        [dids[i] for i in order],
        explore[order],
    )
    action = np.empty(n, dtype=np.int64)
    action[order] = res.action
    probs = np.empty_like(res.probs)
    probs[order] = res.probs
    cand = np.empty_like(res.candidates)
    cand[order] = res.candidates
    over = np.empty_like(res.over_budget)
    over[order] = res.over_budget
    for i in np.flatnonzero(over.any(axis=1)):
        note[i] = "budget:" + ",".join(o for o, x in zip(names, over[i], strict=True) if x)

    actions = np.array(["none", *names], dtype=object)
    offer = actions[action]
    propensity = probs[np.arange(n), action]
    bad = ~np.isclose(probs.sum(axis=1), 1.0) | (propensity <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise RebuyError(
            f"policy produced an invalid draw for {dids[first]}: {dict(zip(actions, probs[first], strict=True))}"
        )
    dist = [
        {str(a): float(p) for a, p, c in zip(actions, pr, cm, strict=True) if c}
        for pr, cm in zip(probs.tolist(), cand.tolist(), strict=True)
    ]
    recs = records(
        s[
            [
                "churn_probability",
                "repurchase_probability",
                "expected_days_to_next_order",
                "expected_value",
                "offer_estimates",
                "cold_start",
            ]
        ]
    )
    scores = [
        {
            "churn_probability": _num(r["churn_probability"]),
            "repurchase_probability": _num(r["repurchase_probability"]),
            "expected_days_to_next_order": _num(r["expected_days_to_next_order"]),
            "expected_value": _num(r["expected_value"]),
            "offer_estimates": {o: float(v) for o, v in r["offer_estimates"].items()},
            "cold_start": bool(r["cold_start"]),
        }
        for r in recs
    ]
    out = pd.DataFrame(
        {
            "decision_id": cands["decision_id"].to_numpy(dtype=object),
            "customer_id": cands["customer_id"].to_numpy(dtype=object),
            "decided_at": pd.DatetimeIndex([as_of] * n).tz_convert("UTC"),
            "trigger": cands["trigger"].to_numpy(dtype=object),
            "campaign": cands["campaign"].to_numpy(dtype=object),
            "episode": cands["episode"].to_numpy(dtype=object),
            "offer": offer,
            "channel": cands["channel"].to_numpy(dtype=object),
            "group": cands["group"].to_numpy(dtype=object),
            "propensity": propensity.astype(float),
            "distribution": dist,
            "model_versions": [dict(v) for v in s["model_versions"]],
            "scores": scores,
            "reasons": [list(r) for r in s["reasons"]],
            "segment": s["segment"].to_numpy(dtype=object),
            "note": note,
        }
    )
    return out[list(DECISION_COLUMNS)]


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x
