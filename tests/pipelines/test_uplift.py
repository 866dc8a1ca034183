"""Uplift report on a hand-worked example (numbers derived in the comments), writers and MLflow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from pipelines.uplift_report import attribute, log_report, render_html, uplift_tables, write_report
from rebuy.config import Config, PathsConfig
from rebuy.ingest import conform

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
AS_OF = T("2025-06-01")


def _decisions() -> pd.DataFrame:
    ids = ["t1", "t2", "t3", "t4", "c1", "c2", "c3", "c4", "h1", "h2", "late"]
    return pd.DataFrame(
        {
            "decision_id": [f"d-{i}" for i in ids],
            "customer_id": ids,
            "decided_at": [T("2025-05-01")] * 10 + [T("2025-05-25")],
            "campaign": ["wake_up"] * 11,
            "offer": ["coupon_10pct", "wake_up_gift", "none", "free_shipping"] + ["none"] * 7,
            "group": ["treatment"] * 4 + ["control"] * 4 + ["holdout"] * 2 + ["treatment"],
            "segment": ["dormant", "dormant", "potential", "potential"] * 2 + ["dormant"] * 3,
        }
    )


def _orders() -> pd.DataFrame:
    return conform(
        "orders",
        pd.DataFrame(
            {
                "order_id": [f"o{i}" for i in range(9)],
                "customer_id": ["t1", "t2", "t2", "t3", "t4", "c1", "c2", "h1", "t1"],
                "ordered_at": [
                    T("2025-05-05"),
                    T("2025-05-10"),
                    T("2025-05-12"),
                    T("2025-05-20"),
                    T("2025-04-30"),
                    T("2025-05-02"),
                    T("2025-05-15"),
                    T("2025-05-03"),
                    T("2025-06-02"),
                ],
                "amount": [100.0, 50.0, 30.0, 70.0, 99.0, 40.0, 20.0, 10.0, 500.0],
            }
        ),
    )


def test_attribution_window_is_after_the_decision_and_inclusive_at_its_end() -> None:
    a = attribute(_decisions(), _orders(), 14, AS_OF).set_index("customer_id")
    # t3 ordered 19 days later (outside), t4 before the decision; c2 exactly 14 days later (inside);
    # t1's 06-02 order is after as_of (never seen); "late" was decided 05-25: its window is still open.
    assert a["revenue"].to_dict() == {
        "t1": 100.0,
        "t2": 80.0,
        "t3": 0.0,
        "t4": 0.0,
        "c1": 40.0,
        "c2": 20.0,
        "c3": 0.0,
        "c4": 0.0,
        "h1": 10.0,
        "h2": 0.0,
        "late": 0.0,
    }
    assert a.loc["t2", "orders"] == 2 and a.loc["t2", "first_amount"] == 50.0
    assert not a.loc["late", "matured"] and a.drop("late")["matured"].all()


def test_uplift_numbers_worked_by_hand() -> None:
    r = uplift_tables(Config(), _decisions(), _orders(), AS_OF)
    assert r["matured"] == 10 and r["not_matured"] == 1
    wake = r["campaigns"][0]
    # conversion 2/4 vs 2/4: no difference, p = 1; Wald se = sqrt(.25/4 + .25/4)
    assert wake["conversion_diff"] == 0.0 and wake["conversion_p_value"] == pytest.approx(1.0)
    half = 1.959963984540054 * math.sqrt(0.125)
    assert wake["conversion_ci"] == pytest.approx([-half, half])
    # revenue per customer: (100+80)/4 = 45 vs (40+20)/4 = 15 -> +30; incremental revenue 30 * 4 = 120
    assert wake["revenue_diff"] == pytest.approx(30.0) and wake["incremental_revenue"] == pytest.approx(120.0)
    welch = stats.ttest_ind([100, 80, 0, 0], [40, 20, 0, 0], equal_var=False)
    assert wake["revenue_p_value"] == pytest.approx(welch.pvalue)
    # cost: coupon 0.02 + 10% of t1's first order (100) = 10.02; gift 3.0; free shipping sent, not redeemed 0.02
    assert wake["offer_cost"] == pytest.approx(13.04)
    assert wake["roi"] == pytest.approx((120 * 0.35 - 13.04) / 13.04)
    k = r["kpis"]["treatment"]
    # repurchase 2/4; redemption: coupon and gift converted, free shipping not -> 2/3; AOV 180 / 3 orders
    assert k["repurchase_rate"] == 0.5 and k["redemption_rate"] == pytest.approx(2 / 3)
    assert k["average_order_value"] == pytest.approx(60.0)
    assert k["clv_proxy"] == pytest.approx(0.75 * 365 / 14 * 60 * 0.35)
    assert r["holdout"]["customers_control"] == 2 and r["holdout"]["conversion_control"] == 0.5
    seg = {s["segment"]: s for s in r["segments"]}
    assert seg["dormant"]["revenue_per_customer_treatment"] == pytest.approx(90.0)  # t1, t2


def test_no_conversions_on_either_side_says_so_without_an_interval() -> None:
    """Nothing converted yet: a note, no [0, 0] interval with p = 1 that would read as a measured zero."""
    orders = _orders().iloc[:0]
    r = uplift_tables(Config(), _decisions(), orders, AS_OF)
    wake = r["campaigns"][0]
    assert wake["note"] == "no conversions yet: no interval"
    assert wake["customers_treatment"] == 4 and wake["conversion_treatment"] == 0.0
    for key in ("conversion_diff", "conversion_ci", "conversion_p_value", "revenue_ci", "revenue_p_value"):
        assert key not in wake
    assert r["holdout"]["note"] == "no conversions yet: no interval"
    assert "no conversions yet" in render_html(r)


def test_conversion_interval_and_p_value_worked_by_hand() -> None:
    """3/4 vs 1/4: Wald half-width 1.96 * sqrt(3/64 + 3/64); pooled z = 0.5 / sqrt(.5 * .5 * (1/4 + 1/4))."""
    from pipelines.uplift_report import compare

    treat = pd.DataFrame({"converted": [True, True, True, False], "revenue": [10.0, 20.0, 30.0, 0.0]})
    ctrl = pd.DataFrame({"converted": [True, False, False, False], "revenue": [10.0, 0.0, 0.0, 0.0]})
    r = compare(treat, ctrl, 0.35, 0.0)
    half = 1.959963984540054 * math.sqrt(3 / 64 + 3 / 64)
    assert r["conversion_diff"] == 0.5 and r["conversion_ci"] == pytest.approx([0.5 - half, 0.5 + half])
    assert r["conversion_p_value"] == pytest.approx(2 * stats.norm.sf(0.5 / math.sqrt(0.125)))
    welch = stats.ttest_ind([10, 20, 30, 0], [10, 0, 0, 0], equal_var=False)
    assert r["revenue_p_value"] == pytest.approx(welch.pvalue)
    lo, hi = welch.confidence_interval(0.95)
    assert r["revenue_ci"] == pytest.approx([lo, hi])


def test_pseudonymised_decisions_are_left_out() -> None:
    d = _decisions().assign(pseudonymised=[True] + [False] * 10)
    r = uplift_tables(Config(), d, _orders(), AS_OF)
    assert r["forgotten_excluded"] == 1 and r["campaigns"][0]["customers_treatment"] == 3


def test_writes_html_and_json_and_logs_to_mlflow(tmp_path: Path) -> None:
    cfg = Config(paths=PathsConfig(data_dir=tmp_path))
    r = uplift_tables(cfg, _decisions(), _orders(), AS_OF)
    paths = write_report(r, tmp_path / "reports")
    assert json.loads(paths["json"].read_text())["campaigns"][0]["campaign"] == "wake_up"
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "Global holdout" in html
    import mlflow

    run_id = log_report(cfg, r, paths)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    run = mlflow.get_run(run_id)
    assert run.data.metrics["campaign.wake_up.conversion_diff"] == 0.0
    arts = {a.path for a in mlflow.MlflowClient(cfg.mlflow_uri).list_artifacts(run_id, "uplift")}
    assert arts == {"uplift/uplift.html", "uplift/uplift.json"}
