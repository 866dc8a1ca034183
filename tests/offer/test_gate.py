"""The offer gate, worked by hand: outcomes credited once, held-out rows by customer and time, DR on explored
actions only, and the candidate must surely beat both the current policy and sending nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rebuy.config import OffersConfig
from training.offer_data import LoggedSet, customer_time_split, decision_outcomes
from training.offer_eval import evaluate_uplift
from training.offer_gate import promotion_decision

T0 = pd.Timestamp("2025-03-01 09:00", tz="UTC")
D = pd.Timedelta(days=1)
RANDOM = {"none": 0.5, "coupon_10pct": 0.5}


def test_one_order_is_credited_to_at_most_one_decision() -> None:
    offers = OffersConfig()  # attribution 14 days: the windows of d1, d2 and d3 overlap
    decisions = pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3"],
            "customer_id": ["a", "a", "a"],
            "decided_at": [T0, T0 + 3 * D, T0 + 6 * D],
            "offer": ["coupon_10pct", "none", "none"],
            "propensity": [0.5, 0.5, 1.0],
            "distribution": [RANDOM, RANDOM, {"none": 1.0}],  # d3: a holdout decision (not randomized)
        }
    )
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a"],
            # o1 only in d1's window; o2 in d1's and d2's (-> d2, the latest before it); o3 in all three (-> d3)
            "ordered_at": [T0 + 1 * D, T0 + 5 * D, T0 + 7 * D],
            "amount": [10.0, 20.0, 40.0],
        }
    )
    out = decision_outcomes(decisions, orders, offers).set_index("decision_id")
    assert list(out.index) == ["d1", "d2"]  # d3 is dropped (forced), but it still takes o3's credit
    assert out.loc["d1", "revenue"] == 10.0 and out.loc["d1", "n_orders"] == 1
    assert out.loc["d2", "revenue"] == 20.0 and out.loc["d2", "n_orders"] == 1
    assert out["revenue"].sum() == 30.0  # no order counted twice, o3 counted for no randomized decision


def test_held_out_rows_are_split_by_customer_and_time() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    rows = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in rng.integers(0, 400, n)],
            "decided_at": T0 + pd.to_timedelta(rng.uniform(0, 200, n), unit="D"),
        }
    )
    train, test = customer_time_split(rows, 0.3, attribution_days=14)
    assert not (train & test).any()
    assert 0.25 < test.mean() < 0.35
    start = rows.loc[test, "decided_at"].min()
    test_customers = set(rows.loc[test, "customer_id"])
    # every training row of a held-out customer had its outcome closed before the test period began
    theirs = train & rows["customer_id"].isin(test_customers).to_numpy()
    assert theirs.any() and (rows.loc[theirs, "decided_at"] + 14 * D < start).all()
    # customers outside the held-out half train at any time, and never appear in the test rows
    others = train & ~rows["customer_id"].isin(test_customers).to_numpy()
    assert (rows.loc[others, "decided_at"] >= start).any()
    # stable: the same rows split the same way in another call (another process)
    again = customer_time_split(rows, 0.3, attribution_days=14)
    assert (again[0] == train).all() and (again[1] == test).all()


class _Always:
    """A fitted model stub that estimates +1 for arm A on every row and 0 for every level: its greedy policy
    sends A wherever A is allowed, and with q̂ = 0 the doubly robust values are plain IPS (hand-computable)."""

    class _Enc:
        def transform(self, X: pd.DataFrame) -> np.ndarray:
            return X.to_numpy(dtype=float)

    encoder = _Enc()
    arms = ("A",)
    control = "none"

    def effects_frame(self, X: np.ndarray, target: str = "margin") -> pd.DataFrame:
        return pd.DataFrame({"A": np.ones(len(X))})

    def levels_matrix(self, X: np.ndarray, target: str, actions) -> np.ndarray:
        return np.zeros((len(X), len(actions)))


def _worked_rows(y_a: float) -> LoggedSet:
    # 80 rows explored and logged A (propensity 0.5, margin y_a); 80 explored and logged none (margin 0.10);
    # 40 rows where A was not allowed (consent, caps): none with propensity 1 (margin 0.20)
    arm = np.array(["A"] * 80 + ["none"] * 120, dtype=object)
    p = np.r_[np.full(160, 0.5), np.ones(40)]
    y = np.r_[np.full(80, y_a), np.full(80, 0.10), np.full(40, 0.20)]
    allowed = pd.DataFrame({"A": np.r_[np.ones(160, bool), np.zeros(40, bool)]})
    out = pd.DataFrame({"margin": y, "conversion": (y > 0).astype(float)})
    return LoggedSet(pd.DataFrame({"x": np.zeros(200)}), arm, p, out, (), allowed)


def test_gate_promotes_a_candidate_that_beats_nothing_by_hand() -> None:
    ev = evaluate_uplift(_Always(), _worked_rows(0.30), "none", "margin", current="logged")  # type: ignore[arg-type]
    # candidate − nothing per row: 2·0.30 on A rows, −2·0.10 on explored none rows, 0 where A was never
    # explored (both policies send none there): mean (80·0.6 − 80·0.2)/200 = 0.16
    assert ev.vs_nothing is not None and ev.vs_nothing.value == pytest.approx(0.16)
    # sd of (0.6 ×80, −0.2 ×80, 0 ×40) with ddof 1 = sqrt(26.88/199); lower bound 0.16 − 1.96·sd/√200 = 0.109
    assert ev.vs_nothing.low == pytest.approx(0.16 - 1.959964 * np.sqrt(26.88 / 199 / 200), rel=1e-6)
    # candidate − logging policy: (0.6 − 0.3) ×80, (0 − 0.1) ×80, (0.2 − 0.2) ×40 -> mean 0.08, low 0.0545
    assert ev.vs_current is not None and ev.vs_current.value == pytest.approx(0.08)
    assert ev.vs_current.low == pytest.approx(0.08 - 1.959964 * np.sqrt(6.72 / 199 / 200), rel=1e-6)
    ok, reason = promotion_decision(ev)
    assert ok and reason.startswith("promote:"), reason


def test_gate_refuses_a_candidate_that_loses_to_nothing_by_hand() -> None:
    ev = evaluate_uplift(_Always(), _worked_rows(0.05), "none", "margin", current="logged")  # type: ignore[arg-type]
    # candidate − nothing: 2·0.05 ×80, −0.2 ×80, 0 ×40 -> (8 − 16)/200 = −0.04
    assert ev.vs_nothing is not None and ev.vs_nothing.value == pytest.approx(-0.04)
    ok, reason = promotion_decision(ev)
    assert not ok and "does not surely beat sending nothing" in reason


def test_unexplored_actions_are_never_credited() -> None:
    # were the 40 rows where A was never allowed valued as if the candidate sent A there, "nothing" would
    # earn their 0.20 and the candidate 0 (no logged A to weight): candidate − nothing would drop to 0.12
    rows = _worked_rows(0.30)
    everywhere = LoggedSet(rows.X, rows.arm, rows.propensity, rows.outcomes, (), None)
    ev_all = evaluate_uplift(_Always(), everywhere, "none", "margin", current="logged")  # type: ignore[arg-type]
    assert ev_all.vs_nothing is not None and ev_all.vs_nothing.value == pytest.approx(0.12)
    ev = evaluate_uplift(_Always(), rows, "none", "margin", current="logged")  # type: ignore[arg-type]
    assert ev.vs_nothing is not None and ev.vs_nothing.value == pytest.approx(0.16)


def test_offer_and_campaign_do_not_import_each_other() -> None:
    root = Path(__file__).resolve().parents[2] / "training"

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / f"{name}.py").read_text(encoding="utf-8"))
        return {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }

    assert "training.campaign" not in imports("offer")
    assert "training.offer" not in imports("campaign")
    for part in ("offer_data", "offer_eval", "offer_learn", "offer_gate", "offer_plots"):
        assert not {"training.offer", "training.campaign"} & imports(part), part
