"""Policy layer on hand-written rows: consent as of a time, DST-correct quiet hours, caps, groups, budget."""

from __future__ import annotations

import pandas as pd

from pipelines.clock import in_quiet_hours, local_clock
from pipelines.policy_layer import (
    apply_policy,
    capped,
    consent_as_of,
    in_control,
    in_holdout,
    message_counts,
)
from rebuy.config import Config, OffersConfig
from rebuy.ingest import conform

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731


def test_consent_latest_update_at_or_before_as_of_wins() -> None:
    customers = conform(
        "customers",
        pd.DataFrame(
            {
                "customer_id": ["a", "b"],
                "signup_at": [T("2025-01-01")] * 2,
                "consent_email": [True, False],
                "consent_push": [True, True],
            }
        ),
    )
    updates = conform(
        "consent_updates",
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b", "b"],
                "changed_at": [T("2025-03-01"), T("2025-05-01"), T("2025-02-01"), T("2025-04-01")],
                "channel": ["email", "email", "email", "push"],
                "consent": [False, True, True, False],
            }
        ),
    )
    at = consent_as_of(customers, updates, T("2025-04-15"))
    assert at.loc["a", "email"] is False or not at.loc["a", "email"]  # opted out 03-01; opt-in 05-01 not yet
    assert at.loc["b", "email"] and not at.loc["b", "push"]
    later = consent_as_of(customers, updates, T("2025-06-01"))
    assert later.loc["a", "email"]


def test_quiet_hours_follow_daylight_saving() -> None:
    # New York switched to EDT (UTC-4) on 2025-03-09. 12:30 UTC is 07:30 EST the day before (quiet, 21->8)
    # but 08:30 EDT that day (not quiet). A fixed -5 offset would call both quiet.
    cust = pd.DataFrame({"customer_id": ["ny"], "timezone": ["America/New_York"]})
    before = local_clock(T("2025-03-08 12:30"), cust)["local_hour"]
    after = local_clock(T("2025-03-09 12:30"), cust)["local_hour"]
    assert before.iloc[0] == 7 and after.iloc[0] == 8
    assert in_quiet_hours(before, (21, 8)).iloc[0] and not in_quiet_hours(after, (21, 8)).iloc[0]
    # non-wrapping window
    assert list(in_quiet_hours(pd.Series([1, 2, 5]), (2, 5))) == [False, True, False]


def test_holdout_and_control_are_deterministic_and_independent_of_order() -> None:
    ids = [f"c{i}" for i in range(2000)]
    h1 = in_holdout(ids, 0.05, "s")
    h2 = in_holdout(list(reversed(ids)), 0.05, "s")[::-1]
    assert (h1 == h2).all() and 0 < h1.sum() < 200
    assert (in_holdout(ids, 0.05, "other") != h1).any()  # the salt matters
    c_a = in_control(ids, ["welcome"] * 2000, [0.1] * 2000, "s")
    c_b = in_control(ids, ["wake_up"] * 2000, [0.1] * 2000, "s")
    assert (c_a != c_b).any()  # a fresh randomisation per campaign


def test_caps_count_messages_within_the_window_on_either_side() -> None:
    cfg = Config()
    as_of = T("2025-06-10 12:00")
    hist = pd.DataFrame(
        {
            "customer_id": ["e", "f", "g", "g", "g", "h"],
            "decided_at": [
                as_of - pd.Timedelta(days=2),
                as_of - pd.Timedelta(days=3),
                as_of - pd.Timedelta(days=2.5),
                as_of - pd.Timedelta(days=4),
                as_of - pd.Timedelta(days=6),
                as_of - pd.Timedelta(days=1),
            ],
            "channel": ["email", "email", "push", "push", "push", "email"],
            "group": ["treatment"] * 5 + ["control"],
            "offer": ["coupon_10pct"] * 6,
        }
    )
    counts = message_counts(hist, as_of, cfg.policy.caps)
    assert capped("e", "email", counts, cfg.policy.caps) == "cap:email"  # 1 email per 3 days, one 2 days ago
    assert capped("f", "email", counts, cfg.policy.caps) is None  # exactly 3 days ago: outside the window
    assert capped("g", "push", counts, cfg.policy.caps) == "cap:all"  # push 2.5 d ago ok; 3 messages in 7 d
    assert capped("h", "email", counts, cfg.policy.caps) is None  # control rows were never sent


def _one(customer: str, campaign: str = "wake_up", channel: str = "email") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [customer],
            "trigger": ["inactive_30d"],
            "kind": ["inactive"],
            "campaign": [campaign],
            "channel": [channel],
            "offers": [("wake_up_gift", "coupon_10pct", "points_x2")],
            "episode": ["inactive:2025-05-01"],
            "priority": [2],
        }
    )


def _tables(ids: list[str]) -> dict[str, pd.DataFrame]:
    cust = conform(
        "customers",
        pd.DataFrame(
            {
                "customer_id": ids,
                "signup_at": [T("2025-01-01")] * len(ids),
                "consent_email": [True] * len(ids),
            }
        ),
    )
    return {
        "customers": cust,
        "consent_updates": conform(
            "consent_updates", pd.DataFrame(columns=["customer_id", "changed_at", "channel", "consent"])
        ),
    }


def _scores(ids: list[str], margins: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": 0.5,
            "repurchase_probability": 0.5,
            "expected_days_to_next_order": 10.0,
            "expected_value": 100.0,
            "segment": "potential",
            "offer_estimates": [dict(margins) for _ in ids],
            "best_offer": "coupon_10pct",
            "reasons": [[] for _ in ids],
            "model_versions": [{"offer": "3"} for _ in ids],
            "feature_age_seconds": 1.0,
            "cold_start": False,
        }
    )


def test_treatment_draw_records_propensity_and_distribution_and_is_reproducible() -> None:
    ids = [f"x{i}" for i in range(400)]
    cands = pd.concat([_one(c) for c in ids], ignore_index=True)
    margins = {"wake_up_gift": -1.0, "coupon_10pct": 2.0, "points_x2": 0.5}
    hist = pd.DataFrame(columns=["customer_id", "decided_at", "channel", "group", "offer"])
    cfg = Config()
    out = apply_policy(cfg, T("2025-06-10 12:00"), cands, _scores(ids, margins), _tables(ids), hist)
    d = out.decisions.set_index("customer_id")
    assert len(d) == 400 and set(d["group"]) == {"treatment", "control", "holdout"}
    others = d.loc[d["group"] != "treatment"]
    assert (others["offer"] == "none").all() and (others["propensity"] == 1.0).all()
    treated = d.loc[d["group"] == "treatment"]
    for _, r in treated.iterrows():
        assert abs(sum(r["distribution"].values()) - 1) < 1e-9
        assert r["propensity"] == r["distribution"][r["offer"]]
    # epsilon 0.1 over {none, coupon, points, gift}: greedy coupon gets 0.9 + 0.025
    assert (treated["distribution"].map(lambda x: round(x["coupon_10pct"], 6)) == 0.925).all()
    share = (treated["offer"] == "coupon_10pct").mean()
    assert 0.85 < share < 0.99
    again = apply_policy(cfg, T("2025-06-10 12:00"), cands, _scores(ids, margins), _tables(ids), hist)
    pd.testing.assert_frame_equal(out.decisions, again.decisions)


def test_capped_treatment_keeps_its_group_with_offer_none_and_budget_is_respected() -> None:
    ids = [f"y{i}" for i in range(300)]
    cands = pd.concat([_one(c) for c in ids], ignore_index=True)
    as_of = T("2025-06-10 12:00")
    hist = pd.DataFrame(
        {
            "customer_id": ids,
            "decided_at": [as_of - pd.Timedelta(days=1)] * 300,
            "channel": "email",
            "group": "treatment",
            "offer": "care_message",
        }
    )
    out = apply_policy(Config(), as_of, cands, _scores(ids, {"coupon_10pct": 2.0}), _tables(ids), hist)
    t = out.decisions.loc[out.decisions["group"] == "treatment"]
    assert len(t) and (t["offer"] == "none").all() and (t["note"] == "cap:email").all()

    cfg = Config(offers=OffersConfig(budget_count={"coupon_10pct": 5}, exploration_share=0.0))
    out = apply_policy(
        cfg, as_of, cands, _scores(ids, {"coupon_10pct": 2.0, "points_x2": 1.0}), _tables(ids), hist.iloc[:0]
    )
    t = out.decisions.loc[out.decisions["group"] == "treatment"]
    assert (t["offer"] == "coupon_10pct").sum() == 5
    assert (t.loc[t["offer"] != "coupon_10pct", "offer"] == "points_x2").all()


def test_no_consent_and_quiet_hours_are_skipped_before_randomisation() -> None:
    cands = pd.concat([_one("a"), _one("b"), _one("c", channel="none")], ignore_index=True)
    tables = _tables(["a", "b", "c"])
    tables["customers"].loc[tables["customers"]["customer_id"] == "b", "consent_email"] = False
    tables["customers"]["consent_email"] = tables["customers"]["consent_email"].astype(bool)
    night = T("2025-06-10 23:30")  # UTC customers: inside 21->8
    out = apply_policy(
        Config(),
        night,
        cands,
        _scores(["a", "b", "c"], {}),
        tables,
        pd.DataFrame(columns=["customer_id", "decided_at", "channel", "group", "offer"]),
    )
    assert out.skipped.set_index("customer_id")["reason"].to_dict() == {
        "a": "quiet_hours",
        "b": "no_consent:email",
    }
    assert list(out.decisions["customer_id"]) == ["c"]  # channel none: nothing is sent, no consent needed
