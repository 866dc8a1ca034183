"""Contact-history features on hand-written rows; every expected value is worked out in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import FAMILIES, compute_features, request_time_features
from features.contact import CONTACT, contact_features
from rebuy.contract import empty

C = pd.Timestamp("2025-03-01", tz="UTC")
D = pd.Timedelta(days=1)
H = pd.Timedelta(hours=1)
NS = pd.Timedelta(1, "ns")


def _ts(values) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(values).as_unit("ns"))


def _messages() -> pd.DataFrame:
    rows = [
        # a: newsletters, rebuy's offers and an imported sms; m6 lies after the cutoff
        ("m1", "a", C - 100 * D, "email", "newsletter", "weekly", None),
        ("m2", "a", C - 60 * D, "email", "newsletter", "weekly", None),
        ("m3", "a", C - 20 * D, "email", "rebuy", "wake_up", "coupon_10pct"),
        ("m4", "a", C - 5 * D, "push", "rebuy", "cycle", "points_x2"),
        ("m5", "a", C - 2 * D, "sms", "import", "spring", None),
        ("m6", "a", C + 1 * D, "email", "rebuy", "cycle", "coupon_10pct"),
        # n: only newsletters
        ("n1", "n", C - 40 * D, "email", "newsletter", "weekly", None),
        ("n2", "n", C - 10 * D, "email", "newsletter", "weekly", None),
        ("n3", "n", C - 3 * D, "email", "newsletter", "weekly", None),
    ]
    df = pd.DataFrame(
        rows, columns=["message_id", "customer_id", "sent_at", "channel", "source", "campaign", "offer"]
    )
    df["sent_at"] = _ts(df["sent_at"])
    return df


def _events() -> pd.DataFrame:
    rows = [
        ("a", C - 99 * D, "email_open"),  # m1 opened (1 day after)
        ("a", C - 50 * D, "email_open"),  # 10 days after m2: not m2's (7-day response window)
        ("a", C - 19 * D, "email_open"),  # m3 opened
        ("a", C - 19 * D, "email_click"),  # m3 clicked
        ("a", C + H, "push_open"),  # after the cutoff: m4 is unopened at C, opened at C + 1 day
        ("n", C - 9 * D, "email_open"),  # n2 opened (before n3 was sent)
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "occurred_at", "event_type"])
    df["occurred_at"] = _ts(df["occurred_at"])
    df["category"] = None
    return df


def _orders() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3"],
            "customer_id": ["a", "a", "z"],
            "ordered_at": _ts([C - 15 * D, C + 2 * D, C - 30 * D]),  # o1 redeems m3 (5 days after)
            "amount": [40.0, 50.0, 10.0],
        }
    )
    return df.assign(category="X", discount=0.0, items=1, returned_amount=0.0)


def _consent_updates() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a"],
            "changed_at": _ts([C - 100 * D, C - 50 * D, C - 1 * D]),
            "channel": ["email", "email", "sms"],
            "consent": [False, True, False],  # two withdrawals (one 100 days ago), one re-consent
            "source": None,
        }
    )
    return df


def _pairs(cutoff: pd.Timestamp = C) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "n", "z"], "cutoff": [cutoff] * 3})


def _contact(cutoff: pd.Timestamp = C, **overrides) -> pd.DataFrame:
    args = {
        "messages": _messages(),
        "events": _events(),
        "orders": _orders(),
        "consent_updates": _consent_updates(),
    }
    args.update(overrides)
    return contact_features(
        args["messages"], args["events"], args["orders"], args["consent_updates"], _pairs(cutoff)
    ).set_index("customer_id")


def test_contact_by_hand():
    f = _contact()
    a, n, z = f.loc["a"], f.loc["n"], f.loc["z"]
    # a: m2..m5 within 90 days, m3..m5 within 30, m4 and m5 within 7; m6 is after the cutoff
    assert (a["messages_7d"], a["messages_30d"], a["messages_90d"]) == (2, 3, 4)
    assert (a["messages_email_7d"], a["messages_email_30d"], a["messages_email_90d"]) == (0, 1, 2)
    assert (a["messages_sms_7d"], a["messages_sms_30d"], a["messages_sms_90d"]) == (1, 1, 1)
    assert (a["messages_push_7d"], a["messages_push_30d"], a["messages_push_90d"]) == (1, 1, 1)
    assert (a["offers_7d"], a["offers_30d"], a["offers_90d"]) == (1, 2, 2)
    assert a["last_message_at"] == (C - 2 * D).value / 1e9
    # openable (email/push) among the last 10: m1..m4; opened m1 and m3 -> 2/4; clicked m3 of m1..m3 -> 1/3
    assert a["open_rate_last_n"] == pytest.approx(0.5)
    assert a["click_rate_last_n"] == pytest.approx(1 / 3)
    assert (a["unsubscribes_90d"], a["unsubscribes_total"]) == (1, 2)
    assert a["redemptions_coupon_10pct"] == 1 and a["redemptions_points_x2"] == 0
    assert a["redemption_rate"] == pytest.approx(0.5)  # 1 of the 2 offers before the cutoff

    # n: newsletters only -> message counts, no offers, no redemptions, rate undefined
    assert (n["messages_7d"], n["messages_30d"], n["messages_90d"]) == (1, 2, 3)
    assert (n["messages_email_90d"], n["messages_sms_90d"], n["messages_push_90d"]) == (3, 0, 0)
    assert (n["offers_7d"], n["offers_30d"], n["offers_90d"]) == (0, 0, 0)
    assert n["open_rate_last_n"] == pytest.approx(1 / 3) and n["click_rate_last_n"] == 0.0
    assert all(n[f"redemptions_{o}"] == 0 for o in ("coupon_10pct", "points_x2", "wake_up_gift"))
    assert np.isnan(n["redemption_rate"])
    assert (n["unsubscribes_90d"], n["unsubscribes_total"]) == (0, 0)

    # z: no messages at all -> counts 0, instants and ratios NaN
    counts = [c for c in CONTACT if c.startswith(("messages_", "offers_", "redemptions_", "unsubscribes_"))]
    assert (z[counts] == 0).all()
    for col in ("last_message_at", "open_rate_last_n", "click_rate_last_n", "redemption_rate"):
        assert np.isnan(z[col]), col


def test_later_cutoff_sees_later_rows_only_then():
    f = _contact(C + D)
    a = f.loc["a"]
    # m6 (email, C + 1 day, exactly at the cutoff) now counts; the push open at C + 1 h opens m4
    assert a["messages_7d"] == 3 and a["offers_7d"] == 2
    assert a["open_rate_last_n"] == pytest.approx(3 / 5)  # m1, m3, m4 of m1, m2, m3, m4, m6
    assert a["redemption_rate"] == pytest.approx(1 / 3)  # o2 (C + 2 days) is after this cutoff


def test_rows_after_the_cutoff_never_change_features():
    late = _messages().assign(sent_at=lambda m: m["sent_at"].where(m["sent_at"] <= C, C + 3 * D))
    extra = pd.DataFrame(
        {
            "customer_id": ["n"] * 2,
            "occurred_at": _ts([C + NS, C + D]),
            "event_type": ["email_open", "email_click"],
        }
    ).assign(category=None)
    changed = _contact(
        messages=pd.concat(
            [late, _messages().assign(message_id=lambda m: m["message_id"] + "x", sent_at=C + NS)]
        ),
        events=pd.concat([_events(), extra], ignore_index=True),
        orders=pd.concat(
            [_orders(), _orders().assign(order_id=lambda o: o["order_id"] + "x", ordered_at=C + NS)]
        ),
    )
    pd.testing.assert_frame_equal(_contact(), changed)


def test_no_messages_table_is_missing_not_zero():
    f = _contact(messages=None)
    assert f[list(CONTACT)].isna().all().all()


def test_no_events_leaves_counts_and_rates_missing():
    f = _contact(events=None)
    assert f.loc["a", "messages_90d"] == 4 and f.loc["a", "redemptions_coupon_10pct"] == 1
    assert f[["open_rate_last_n", "click_rate_last_n"]].isna().all().all()


def test_missing_message_column_is_a_clear_error():
    from rebuy.errors import DataError

    with pytest.raises(DataError, match="messages table lacks required columns"):
        _contact(messages=_messages().drop(columns=["sent_at"]))


def test_compute_features_carries_the_family_and_days_since_message():
    customers = pd.concat(
        [
            empty("customers"),
            pd.DataFrame({"customer_id": ["a", "n", "z"], "signup_at": _ts([C - 400 * D] * 3)}),
        ],
        ignore_index=True,
    )
    tables = {
        "customers": customers,
        "orders": _orders(),
        "events": _events(),
        "consent_updates": _consent_updates(),
        "messages": _messages(),
    }
    out = compute_features(tables, _pairs()).set_index("customer_id")
    assert "contact" in FAMILIES and set(CONTACT) <= set(out.columns)
    pd.testing.assert_frame_equal(out[list(CONTACT)], _contact()[list(CONTACT)])
    days = request_time_features(out, (C + 12 * H).value / 1e9)["days_since_message"]
    assert days[0] == pytest.approx(2.5) and days[1] == pytest.approx(3.5) and np.isnan(days[2])
    # without a messages table (an older data directory) the family is missing, everything else is there
    without = compute_features({k: v for k, v in tables.items() if k != "messages"}, _pairs())
    assert without[list(CONTACT)].isna().all().all() and without["orders_total"].notna().all()
