"""Time of day: served rows come at any hour, the reference at midnight cutoffs. Hour-sensitive features
(windows shorter than a day) are judged only on current rows from the reference's times of day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drift_shop import shop_tables

from features.compute import compute_features, epoch_seconds, request_time_features
from features.contact import CONTACT, REQUEST_TIME_CONTACT
from pipelines.drift import Roles, analyse, hour_sensitive, time_of_day_matched
from rebuy.config import DriftConfig

AS_OF = pd.Timestamp("2025-06-03", tz="UTC")
CUTOFF = pd.Timestamp("2025-06-02", tz="UTC")  # the drift_shops fixture's reference cutoff (a Monday)
CUSTOMERS = 6000


def test_hour_sensitive_features_are_the_sub_day_windows() -> None:
    names = ["views_1h", "views_24h", "carts_24h", "views_7d", "pings_12h", "spend_30d", "h"]
    assert hour_sensitive(names) == ("views_1h", "pings_12h")


def test_time_of_day_match_is_circular_around_the_reference_times() -> None:
    ref = pd.DataFrame({"cutoff": pd.to_datetime(["2025-01-06", "2025-01-13"], utc=True)})  # midnights
    cur = pd.DataFrame(
        {
            "cutoff": pd.to_datetime(
                [
                    "2025-03-01 23:10",  # 50 min before midnight: in
                    "2025-03-02 00:50",  # 50 min after: in
                    "2025-03-02 01:30",  # 90 min after: out
                    "2025-03-02 12:00",  # out
                    "2025-03-02 22:59",  # 61 min before: out
                    "2025-03-03 01:00",  # exactly 60 min: in
                ],
                utc=True,
            )
        }
    )
    got = time_of_day_matched(ref, cur, "cutoff", 60)
    assert got is not None and list(got.index) == [0, 1, 5]
    assert time_of_day_matched(ref, cur.rename(columns={"cutoff": "t"}), "cutoff", 60) is None


def _hour_frames(n: int, seed: int, shift_other: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference at midnights; current at uniformly random hours, where a 1-hour window's activity follows
    the hour (1 % at night, 12 % in the evening) and `other` is unchanged unless shifted."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2025-05-05", periods=28, freq="D", tz="UTC")
    ref = pd.DataFrame(
        {
            "cutoff": days[rng.integers(0, 28, n)],
            "views_1h": (rng.random(n) < 0.01).astype(float),
            "other": rng.normal(0, 1, n),
        }
    )
    hours = rng.random(n) * 24
    evening = (hours >= 16) & (hours < 23)
    cur = pd.DataFrame(
        {
            "cutoff": days[rng.integers(14, 28, n)] + pd.to_timedelta(hours, unit="h"),
            "views_1h": (rng.random(n) < np.where(evening, 0.12, 0.01)).astype(float),
            "other": rng.normal(shift_other, 1, n),
        }
    )
    return ref, cur


def test_an_hour_effect_is_not_drift_but_a_real_shift_still_is() -> None:
    ref, cur = _hour_frames(6000, 3)
    cfg = DriftConfig()
    naive = analyse("m", ref, cur, Roles(features=("views_1h", "other"), timestamp="cutoff"), cfg, AS_OF)
    # judged on all rows, the evening's browsing reads as drift of views_1h
    assert naive.status.level == "drift" and "views_1h" in naive.status.reasons[0]

    roles = Roles(features=("views_1h", "other"), timestamp="cutoff", hour_sensitive=("views_1h",))
    res = analyse("m", ref, cur, roles, cfg, AS_OF)
    assert res.status.level == "ok", res.status.reasons
    row = res.table.set_index("column").loc["views_1h"]
    # compared on the rows within an hour of midnight only (2 of 24 hours: about 1/12 of the rows)
    assert row["cur_rows"] < len(cur) / 6
    assert any("hour-sensitive ['views_1h'] compared on" in n for n in res.notes)

    ref, cur = _hour_frames(6000, 4, shift_other=0.5)
    shifted = analyse("m", ref, cur, roles, cfg, AS_OF)
    assert shifted.status.level == "drift" and "other" in shifted.status.reasons[0]


def test_too_few_rows_at_reference_hours_leave_the_feature_out_and_say_so() -> None:
    ref, cur = _hour_frames(3000, 5)
    cur = cur[(cur["cutoff"].dt.hour >= 8) & (cur["cutoff"].dt.hour < 20)]  # a daytime service
    roles = Roles(features=("views_1h", "other"), timestamp="cutoff", hour_sensitive=("views_1h",))
    res = analyse("m", ref, cur, roles, DriftConfig(), AS_OF)
    assert "views_1h" not in set(res.table["column"]) and "other" in set(res.table["column"])
    assert any("views_1h" in n and "not compared" in n for n in res.notes)
    assert res.status.level == "ok"


@pytest.fixture(scope="module")
def served_at_random_hours() -> pd.DataFrame:
    """A fresh shop (seed 13) served during the day after the reference's cutoff, each customer at a random
    time of day; features computed at that moment, as the online path would."""
    tables = shop_tables(CUSTOMERS, 13, CUTOFF + pd.Timedelta(days=1))
    rng = np.random.default_rng(0)
    cust = tables["customers"]
    ids = cust.loc[cust["signup_at"] <= CUTOFF, "customer_id"].to_numpy()
    at = CUTOFF + pd.to_timedelta(rng.random(len(ids)) * 24, unit="h")
    pairs = pd.DataFrame({"customer_id": ids, "cutoff": pd.DatetimeIndex(at).as_unit("ns")})
    feats = compute_features(tables, pairs)
    for name, values in request_time_features(feats, epoch_seconds(feats["cutoff"])).items():
        feats[name] = values
    return feats


@pytest.mark.slow
def test_unchanged_shop_served_at_random_hours_is_ok(drift_shops, served_at_random_hours) -> None:  # type: ignore[no-untyped-def]
    assert drift_shops["cutoff"] == CUTOFF
    ref = drift_shops["reference"]
    # the repurchase model's features: it reads no contact history (only offer_v2 does), whose counts and
    # days since the last message move for every customer at once with the weekly newsletter's send time
    contact = {*CONTACT, *REQUEST_TIME_CONTACT}
    feats = tuple(
        c
        for c in ref.columns
        if c not in ("customer_id", "cutoff") and not c.endswith("_at") and c not in contact
    )
    roles = Roles(features=feats, timestamp="cutoff", hour_sensitive=hour_sensitive(feats))
    assert roles.hour_sensitive == ("views_1h",)
    cur = served_at_random_hours
    assert cur["cutoff"].dt.hour.nunique() == 24
    res = analyse("repurchase", ref, cur, roles, DriftConfig(), AS_OF)
    assert res.status.level == "ok", res.status.reasons
    assert any("hour-sensitive ['views_1h'] compared on" in n for n in res.notes)
