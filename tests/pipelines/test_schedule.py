"""Hourly passes: each customer's daily slot, rest between decisions, and the pool a pass scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.clock import daily_slot
from pipelines.loop import day_summary, pass_times
from pipelines.orchestrator import run_pass, scoring_pool
from pipelines.policy_layer import resting
from rebuy.config import Config, PathsConfig, ScheduleConfig
from tests.support.fake_client import FakeScoreClient

from .conftest import make_shop

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
CUST = pd.DataFrame(
    {
        "customer_id": ["utc", "sha", "ny", "none"],
        "timezone": ["UTC", "Asia/Shanghai", "America/New_York", None],
    }
)


def _cfg(tmp: Path, **schedule: int) -> Config:
    cfg = Config(paths=PathsConfig(data_dir=tmp))
    return cfg.model_copy(
        update={"policy": cfg.policy.model_copy(update={"schedule": ScheduleConfig(**schedule)})}
    )


def test_daily_slot_is_the_first_waking_hours_of_the_local_day() -> None:
    # quiet 21 -> 8: the slot of hourly passes is local 08:00. June: Shanghai UTC+8, New York UTC-4 (EDT).
    slot = lambda at, every: daily_slot(T(at), CUST, (21, 8), every).tolist()  # noqa: E731
    assert slot("2025-06-10 08:00", 1) == [True, False, False, True]  # 08 local in UTC (and no zone = UTC)
    assert slot("2025-06-10 00:00", 1) == [False, True, False, False]  # 08 in Shanghai
    assert slot("2025-06-10 12:00", 1) == [False, False, True, False]  # 08 EDT in New York
    # every 6 h (00, 06, 12, 18 UTC): the slot is [08, 14) local -> UTC at 12, Shanghai at 00, NY at 12 (08)
    assert slot("2025-06-10 12:00", 6) == [True, False, True, True]
    assert slot("2025-06-10 06:00", 6) == [False] * 4  # 14 in Shanghai is just past [08, 14); UTC 06, NY 02
    assert slot("2025-06-10 00:00", 6) == [False, True, False, False]
    assert slot("2025-06-10 03:00", 24) == [True] * 4  # one daily pass: everyone, whatever the hour


def test_every_customer_has_exactly_one_slot_per_day_of_hourly_passes() -> None:
    hits = sum(
        daily_slot(T("2025-06-10") + pd.Timedelta(hours=h), CUST, (21, 8), 1).astype(int) for h in range(24)
    )
    assert hits.tolist() == [1, 1, 1, 1]


def test_rest_blocks_other_passes_within_the_spacing_on_either_side_but_not_a_rerun() -> None:
    hist = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "decided_at": [
                T("2025-06-10 09:00"),
                T("2025-06-09 13:00"),
                T("2025-06-11 11:00"),
                T("2025-06-10 12:00"),
            ],
        }
    )
    # at 12:00: a 3 h before, b 23 h before, c 23 h after -> resting; d decided at 12:00 is this pass itself
    assert resting(hist, T("2025-06-10 12:00"), 24) == {"a", "b", "c"}
    assert resting(hist, T("2025-06-10 12:00"), 3) == set()  # exactly 3 h is outside a 3 h spacing
    assert resting(hist, T("2025-06-10 12:00"), 0) == set()


def test_pass_times_and_config_validation(tmp_path: Path) -> None:
    day = T("2025-06-10")
    assert [t.hour for t in pass_times(_cfg(tmp_path, every_hours=6, start_hour=1), day)] == [1, 7, 13, 19]
    assert len(pass_times(_cfg(tmp_path), day)) == 24
    assert [t.hour for t in pass_times(_cfg(tmp_path, every_hours=24, start_hour=10), day)] == [10]
    with pytest.raises(ValueError, match="divide 24"):
        ScheduleConfig(every_hours=5)


def test_day_summary_adds_up_the_passes() -> None:
    s = day_summary(
        [
            {
                "as_of": "t0",
                "dry_run": False,
                "decided": 2,
                "by_group": {"treatment": 2},
                "seconds": {"log": 0.5},
            },
            {
                "as_of": "t1",
                "dry_run": False,
                "decided": 3,
                "by_group": {"treatment": 1, "control": 2},
                "seconds": {"log": 1.0},
            },
        ]
    )
    assert s == {
        "as_of": "t0",
        "passes": 2,
        "decided": 5,
        "by_group": {"treatment": 3, "control": 2},
        "seconds": {"log": 1.5},
    }


def test_hourly_passes_score_only_who_they_may_decide_and_decide_each_customer_once_a_day(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path)
    shop = make_shop(300, seed=4)
    day = T("2025-06-10")
    client = FakeScoreClient()
    decided: list[pd.DataFrame] = []
    for h in range(24):
        at = day + pd.Timedelta(hours=h)
        before = len(client.scored)
        res = run_pass(cfg, at, shop, client)
        scored = set(client.scored[before:])
        earlier = set().union(*(set(x["customer_id"]) for x in decided))
        assert not scored & earlier  # a customer decided earlier today rests: not even scored again
        if len(res.decisions):
            decided.append(res.decisions)
    d = pd.concat(decided, ignore_index=True)
    assert d["customer_id"].is_unique  # one decision per customer over 24 hourly passes
    # every decision was made outside the customer's quiet hours (21 -> 8 local)
    zones = shop["customers"].set_index("customer_id")["timezone"].fillna("UTC")
    local = [
        t.tz_convert(zones[c] or "UTC").hour for c, t in zip(d["customer_id"], d["decided_at"], strict=True)
    ]
    assert all(8 <= h < 21 for h in local)
    # a pass the next morning: yesterday's customers rest until 24 h after their decision
    nxt = run_pass(cfg, day + pd.Timedelta(hours=24 + 3), shop, client)
    early = d.loc[d["decided_at"] > day + pd.Timedelta(hours=3), "customer_id"]
    assert not set(nxt.decisions["customer_id"]) & set(early)


def test_scoring_pool_leaves_out_resting_and_sleeping_customers(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    shop = make_shop(200, seed=6)
    at = T("2025-06-10 12:00")
    from pipelines.triggers import all_rule_candidates, select_candidates

    rule = select_candidates(cfg, at, shop, None, rules=all_rule_candidates(cfg, at, shop))
    empty = pd.DataFrame(
        {"decision_id": [], "customer_id": [], "decided_at": pd.Series([], dtype="datetime64[ns, UTC]")}
    )
    pool = scoring_pool(cfg, at, shop, rule, empty)
    zones = shop["customers"].set_index("customer_id")["timezone"].fillna("UTC")
    assert pool and all(8 <= at.tz_convert(zones[c]).hour < 21 for c in pool)  # nobody asleep is scored
    someone = sorted(pool)[0]
    hist = pd.DataFrame(
        {"decision_id": ["x"], "customer_id": [someone], "decided_at": [at - pd.Timedelta(hours=5)]}
    )
    assert someone not in scoring_pool(cfg, at, shop, rule, hist)  # decided 5 h ago: resting
