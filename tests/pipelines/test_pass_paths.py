"""The pass's faster paths give what the plain ones gave: score decoding, columnar inserts, episode dates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines import decision_log as dl
from pipelines.score_client import SCORE_COLUMNS, score_frame
from pipelines.triggers import _day


class _Answers:
    """A /score stand-in answering fixed hand-written rows, in request order."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows, self.calls = rows, []

    def score(self, ids, offers, as_of):  # type: ignore[no-untyped-def]
        self.calls.append(list(ids))
        return [self.rows[c] for c in ids]


def test_score_answers_decode_column_by_column_with_nulls_and_defaults() -> None:
    rows = {
        "a": {
            "customer_id": "a",
            "churn_probability": 0.25,
            "repurchase_probability": None,  # JSON null: unknown
            "expected_days_to_next_order": 3,  # an int in JSON
            "expected_value": 12.5,
            "segment": "potential",
            "offers": {"coupon_10pct": {"incremental_margin": -0.5}, "care_message": {}},
            "best_offer": "none",
            "reasons": [{"model": "churn", "feature": "x", "value": 1.0, "contribution": 0.1}],
            "model_versions": {"churn": "2"},
            "feature_age_seconds": 60.0,
            "cold_start": False,
        },
        "b": {"customer_id": "b", "cold_start": True},  # keys absent
    }
    client = _Answers(rows)
    f = score_frame(client, ["b", "a", "b"], pd.Timestamp("2025-01-01", tz="UTC"), batch_size=1)
    assert list(f.columns) == list(SCORE_COLUMNS)
    assert f["customer_id"].tolist() == ["b", "a"]  # duplicates asked once, order kept
    assert client.calls == [["b"], ["a"]]
    a, b = f.iloc[1], f.iloc[0]
    assert a["churn_probability"] == 0.25 and math.isnan(a["repurchase_probability"])
    assert a["expected_days_to_next_order"] == 3.0
    assert a["offer_estimates"] == {"coupon_10pct": -0.5, "care_message": 0.0}
    assert a["model_versions"] == {"churn": "2"} and len(a["reasons"]) == 1 and not a["cold_start"]
    assert math.isnan(b["churn_probability"]) and math.isnan(b["feature_age_seconds"])
    assert b["segment"] == "unknown" and b["best_offer"] == "none" and b["offer_estimates"] == {}
    assert b["reasons"] == [] and b["model_versions"] == {} and bool(b["cold_start"])


def test_insert_columns_applies_each_columns_type_and_checks_lengths() -> None:
    engine = dl.engine_for("sqlite:///:memory:")
    at = pd.Timestamp("2025-03-01 09:30", tz="UTC")
    cols = {
        "decision_id": ["d1", "d2"],
        "created_at": [dl._naive_utc(at)] * 2,
        "payload": ["{}", "{}"],
        "status": ["pending", "sent"],
        "sent_at": [None, dl._naive_utc(at)],
        "attempts": [0, 1],
    }
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="payload"):
            dl.insert_columns(conn, dl.OUTBOX, {**cols, "payload": ["{}"]})
        dl.insert_columns(conn, dl.OUTBOX, cols)
        dl.insert_columns(conn, dl.OUTBOX, {k: [] for k in cols})  # nothing to insert: no statement
        got = conn.execute(sa.select(dl.OUTBOX).order_by(dl.OUTBOX.c.decision_id)).all()
    assert [(r.decision_id, r.status, r.attempts) for r in got] == [("d1", "pending", 0), ("d2", "sent", 1)]
    assert got[0].created_at == at.tz_localize(None).to_pydatetime() and got[0].sent_at is None


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York", None])
def test_episode_dates_match_strftime(zone: str | None) -> None:
    ts = pd.Series(
        pd.to_datetime(["2024-02-29 23:59:59", "2024-03-10 07:30:00", None, "1999-12-31 16:00:01"], utc=True)
    )
    ts = ts.dt.tz_localize(None) if zone is None else ts.dt.tz_convert(zone)
    got, want = _day(ts), ts.dt.strftime("%Y-%m-%d")
    assert got.iloc[[0, 1, 3]].tolist() == want.iloc[[0, 1, 3]].tolist()
    assert pd.isna(got.iloc[2]) and pd.isna(want.iloc[2])
    if zone == "UTC":
        assert got.iloc[[0, 1, 3]].tolist() == ["2024-02-29", "2024-03-10", "1999-12-31"]  # by hand
    assert _day(pd.Series(np.array([], dtype="datetime64[ns]"))).tolist() == []
