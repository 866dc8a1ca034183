"""Triggers on hand-written rows; expected candidates worked out by hand from the windows."""

from __future__ import annotations

import pandas as pd

from pipelines.triggers import decision_id, select_candidates
from rebuy.config import Config
from rebuy.ingest import conform

AS_OF = pd.Timestamp("2025-06-10 12:00", tz="UTC")
T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731


def tables() -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCDEFGH"),
            "signup_at": [T("2025-01-01")] * 8,
            "birthday": pd.to_datetime(
                [None, "1980-06-10", None, None, None, "1990-06-10", "1990-06-11", "1990-06-11"]
            ),
            "timezone": [None, None, None, None, None, "Asia/Shanghai", "Pacific/Kiritimati", "UTC"],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(9)],
            "customer_id": ["A", "B", "B", "C", "D", "F", "F", "G", "H"],
            "ordered_at": [
                T("2025-06-09 10:00"),
                T("2025-05-01"),
                T("2025-05-05"),
                T("2025-06-01"),
                T("2025-06-09 05:00"),
                T("2025-04-01"),
                T("2025-06-05"),
                T("2025-06-01"),
                T("2025-06-01"),
            ],
            "amount": [10.0] * 9,
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["C", "D", "E", "Z"],
            "occurred_at": [
                T("2025-06-09 00:00"),
                T("2025-06-09 00:00"),
                T("2025-06-10 08:00"),
                T("2025-06-09"),
            ],
            "event_type": ["view", "view", "view", "view"],
        }
    )
    return {
        "customers": conform("customers", customers),
        "orders": conform("orders", orders),
        "events": conform("events", events),
        "consent_updates": conform(
            "consent_updates", pd.DataFrame(columns=["customer_id", "changed_at", "channel", "consent"])
        ),
    }


def test_rule_triggers_worked_by_hand() -> None:
    got = select_candidates(Config(), AS_OF, tables(), None).set_index("customer_id")
    # A: only order 06-09 (within 3 days) -> welcome. B: last order 05-05 (> 30 days) -> wake-up, even though
    # its birthday is today (inactive is listed first). C: viewed 06-09 00:00, 24 h passed, no order since.
    # D: viewed, then ordered -> no browse trigger, but it is D's first order. E: viewed 4 h ago -> still browsing.
    # F: birthday 06-10 (Shanghai date 06-10). G: birthday 06-11, already 06-11 in Kiritimati (UTC+14);
    # H: same birthday on UTC, still 06-10 -> nothing. Z: not a customer -> ignored.
    assert got["trigger"].to_dict() == {
        "A": "first_purchase",
        "B": "inactive_30d",
        "C": "browse_no_buy",
        "D": "first_purchase",
        "F": "birthday",
        "G": "birthday",
    }
    assert got.loc["A", "episode"] == "first:2025-06-09"
    assert got.loc["B", "episode"] == "inactive:2025-05-05"
    assert got.loc["C", "episode"] == "browse:2025-06-09"
    assert got.loc["F", "episode"] == "birthday:2025"
    assert got.loc["C", "channel"] == "push"
    assert got.loc["A", "offers"] == ("care_message", "coupon_10pct")


def test_episode_is_stable_across_passes_so_the_decision_id_is_too() -> None:
    # B stays inactive on the next days: same episode, same decision id -> one wake-up, not one per day.
    ids = []
    for day in range(3):
        got = select_candidates(Config(), AS_OF + pd.Timedelta(days=day), tables(), None).set_index(
            "customer_id"
        )
        ids.append(decision_id("B", got.loc["B", "campaign"], got.loc["B", "episode"]))
    assert len(set(ids)) == 1


def test_holiday_eve_two_days_before_618() -> None:
    as_of = T("2025-06-16 12:00")  # 618 is two local days ahead for buyers
    got = select_candidates(Config(), as_of, tables(), None).set_index("customer_id")
    assert got.loc["H", "trigger"] == "holiday_eve"
    assert got.loc["H", "episode"] == "holiday:618:2025"
    assert "E" not in got.index  # no orders, no holiday campaign
    # one day later (06-17) it is still the eve; on 06-18 itself it no longer fires
    later = select_candidates(Config(), T("2025-06-18 12:00"), tables(), None)
    assert "holiday_eve" not in set(later["trigger"])


def test_audiences_from_scores_and_priority() -> None:
    scores = pd.DataFrame(
        {
            "customer_id": ["A", "H", "G", "E"],
            "churn_probability": [0.9, 0.65, 0.1, 0.99],
            "expected_days_to_next_order": [50.0, 40.0, 2.0, 1.0],
        }
    )
    got = select_candidates(Config(), AS_OF, tables(), scores).set_index("customer_id")
    assert got.loc["A", "trigger"] == "first_purchase"  # event trigger listed before the audience
    assert got.loc["H", "trigger"] == "churn_risk" and got.loc["H", "episode"] == "churn:2025-06-01"
    assert got.loc["G", "trigger"] == "birthday"  # birthday outranks cycle_due
    assert "E" not in got.index  # no order: not in any audience
    assert got.index.is_unique


def test_exclude_removes_forgotten_customers() -> None:
    got = select_candidates(Config(), AS_OF, tables(), None, exclude={"A", "C"})
    assert not {"A", "C"} & set(got["customer_id"])


def test_a_shops_own_holiday_calendar_replaces_the_default(tmp_path) -> None:
    from rebuy.config import load_config

    path = tmp_path / "rebuy.toml"
    path.write_text(
        '[[policy.holidays]]\nname = "black_friday"\ndate = 2025-06-13\n\n'
        '[[policy.holidays]]\nname = "shop_day"\nmonth = 7\nday = 1\n'
    )
    cfg = load_config(path)
    # C (UTC, one order on 06-01, no birthday) is only a holiday candidate; worked out per local date
    on_11th = select_candidates(cfg, T("2025-06-11 12:00"), tables(), None).set_index("customer_id")
    assert on_11th.loc["C", "episode"] == "holiday:black_friday:2025"  # dated holiday two days ahead
    on_29th = select_candidates(cfg, T("2025-06-29 12:00"), tables(), None).set_index("customer_id")
    assert on_29th.loc["C", "episode"] == "holiday:shop_day:2025"  # recurring 07-01, two days ahead
    # 618 is not in this shop's calendar any more; the default calendar still has it
    assert "holiday_eve" not in set(select_candidates(cfg, T("2025-06-16 12:00"), tables(), None)["trigger"])
    assert "holiday_eve" in set(select_candidates(Config(), T("2025-06-16 12:00"), tables(), None)["trigger"])


def test_holiday_config_refuses_impossible_or_ambiguous_dates() -> None:
    import pytest

    from rebuy.config import HolidayConfig, PolicyConfig

    with pytest.raises(ValueError, match="no date"):
        HolidayConfig(name="x", month=4, day=31)
    with pytest.raises(ValueError, match="either month and day"):
        HolidayConfig(name="x", month=1, day=1, date="2025-01-01")
    with pytest.raises(ValueError, match="given twice"):
        PolicyConfig(
            holidays=[HolidayConfig(name="x", month=1, day=2), HolidayConfig(name="x", month=3, day=4)]
        )
    # a moving holiday: one dated entry per year is fine
    PolicyConfig(
        holidays=[HolidayConfig(name="bf", date="2025-11-28"), HolidayConfig(name="bf", date="2026-11-27")]
    )


def test_vectorised_next_birthday_equals_the_one_by_one_rule() -> None:
    import numpy as np

    from pipelines.triggers import _next_dates, _next_one

    rng = np.random.default_rng(3)
    today = pd.Series(pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 2000, 500), unit="D"))
    bday = pd.Series(pd.to_datetime("1960-01-01") + pd.to_timedelta(rng.integers(0, 20000, 500), unit="D"))
    bday.iloc[:40] = pd.Timestamp("1992-02-29")  # falls on 28 Feb in other years
    got = _next_dates(today, bday.dt.month.to_numpy(), bday.dt.day.to_numpy())
    want = [_next_one(t, b.month, b.day) for t, b in zip(today, bday, strict=True)]
    assert got.tolist() == want
