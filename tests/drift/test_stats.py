"""Effect sizes, noise floors and the status rule on small hand-built columns (values worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.drift_stats import (
    Thresholds,
    assess,
    categorical_effect,
    cohen_h,
    column_table,
    model_status,
    numeric_effect,
    use_log_scale,
)

TH = Thresholds(warning_effect=0.1, drift_effect=0.2, permutations=30, noise_z=3.5, seed=1)


def test_cohen_h_by_hand() -> None:
    # 2·asin(√0.5) = π/2, 2·asin(√0.25) = π/3
    assert cohen_h(0.5, 0.5) == 0.0
    assert cohen_h(0.25, 0.5) == pytest.approx(math.pi / 6)


def test_normed_wasserstein_location_shift_by_hand() -> None:
    # {1, 3} vs {2, 4}, 100 each: W1 = 1, each side's variance is 1 -> pooled std 1 -> effect 1
    ref = np.array([1.0, 3.0] * 100)
    cur = np.array([2.0, 4.0] * 100)
    assert not use_log_scale(ref)
    assert numeric_effect(ref, cur) == pytest.approx(1.0)
    assert numeric_effect(ref, ref.copy()) == 0.0


def test_hurdle_compares_non_zero_part_and_zero_share_separately() -> None:
    # half zeros on both sides; the non-zero part moves by one pooled std -> effect 1 (not diluted to ~0.5)
    ref = np.array([0.0, 0.0, 1.0, 3.0] * 100)
    cur = np.array([0.0, 0.0, 2.0, 4.0] * 100)
    assert numeric_effect(ref, cur) == pytest.approx(1.0)
    # same non-zero values, zeros 50% -> 75%: only Cohen's h = π/6 is left
    cur_zeros = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.0] * 100)
    assert numeric_effect(ref, cur_zeros) == pytest.approx(math.pi / 6)


def test_rare_non_zero_part_is_judged_by_its_share_only() -> None:
    # 5% non-zero on both sides, values 1 vs 5: a handful of customers, so only the (equal) share counts
    ref = np.array([0.0] * 95 + [1.0] * 5)
    cur = np.array([0.0] * 95 + [5.0] * 5)
    assert numeric_effect(np.tile(ref, 40), np.tile(cur, 40)) == 0.0


def test_log_scale_turns_a_price_rise_into_a_location_shift() -> None:
    rng = np.random.default_rng(3)
    ref = rng.lognormal(3.0, 1.0, 50_000)
    assert use_log_scale(ref)
    # log1p(1.2x) - log1p(x) ≈ log 1.2 for x >> 1: the effect is log(1.2)/σ = 0.182 (σ = 1 on the log scale)
    assert numeric_effect(ref, ref * 1.2) == pytest.approx(math.log(1.2), abs=0.01)


def test_categorical_w_by_hand() -> None:
    ref = pd.Series(["a", "b"] * 50)
    cur = pd.Series(["a"] * 75 + ["b"] * 25)
    # sqrt((0.25² + 0.25²) / 0.5) = 0.5
    assert categorical_effect(ref, cur) == pytest.approx(0.5)
    assert categorical_effect(ref, ref) == 0.0


def test_noise_floor_protects_small_samples_and_vanishes_for_large_ones() -> None:
    rng = np.random.default_rng(0)
    # 150 rows a side: a 0.15-std shift is within what noise alone does at this size -> ok
    small = assess(pd.Series(rng.normal(0, 1, 150)), pd.Series(rng.normal(0.15, 1, 150)), False, TH)
    assert small.floor > 0.15 and small.level == "ok"
    # below MIN_PART_ROWS nothing is compared at all
    tiny = assess(pd.Series(rng.normal(0, 1, 40)), pd.Series(rng.normal(3, 1, 40)), False, TH)
    assert tiny.effect == 0.0 and tiny.level == "ok"
    # 10,000 rows: the floor is far below the thresholds, the 0.3-std shift is drift, a 0.05 one is ok
    big_ref = pd.Series(rng.normal(0, 1, 10_000))
    moved = assess(big_ref, pd.Series(rng.normal(0.3, 1, 10_000)), False, TH)
    assert moved.floor < 0.1 and moved.level == "drift" and moved.effect == pytest.approx(0.3, abs=0.03)
    trivial = assess(big_ref, pd.Series(rng.normal(0.05, 1, 10_000)), False, TH)
    assert trivial.effect > trivial.floor and trivial.level == "ok"  # real, but below the warning threshold


def test_categorical_floor_is_the_chi_square_quantile() -> None:
    from scipy import stats

    ref = pd.Series(["a", "b", "c"] * 100)
    a = assess(ref, ref.copy(), True, TH)
    expected = math.sqrt(stats.chi2.isf(stats.norm.sf(3.5), 2) * (1 / 300 + 1 / 300))
    assert a.floor == pytest.approx(expected) and a.level == "ok"


def _table(levels: list[str], roles: list[str] | None = None) -> pd.DataFrame:
    n = len(levels)
    effect = {"ok": 0.01, "warning": 0.15, "drift": 0.3}
    return pd.DataFrame(
        {
            "column": [f"f{i}" for i in range(n)],
            "role": roles or ["feature"] * n,
            "method": "m",
            "component": "values",
            "effect": [effect[lv] for lv in levels],
            "noise_floor": 0.05,
            "level": levels,
            "effect_level": levels,
            "missing_jump": False,
            "ref_missing": 0.0,
            "cur_missing": 0.0,
        }
    )


def test_status_one_drifted_column_is_drift_and_reasons_name_it() -> None:
    s = model_status(_table(["drift"] + ["ok"] * 9), warning_share=0.2, drift_share=0.3)
    assert s.level == "drift" and "f0" in s.reasons[0]
    assert s.line("churn").startswith("churn: drift")


def test_status_shares_of_mild_columns_add_up() -> None:
    # 2 of 10 warning -> share 20% = warning share; 3 of 10 -> 30% = drift share
    assert model_status(_table(["ok"] * 10), warning_share=0.2, drift_share=0.3).level == "ok"
    assert (
        model_status(_table(["warning"] * 2 + ["ok"] * 8), warning_share=0.2, drift_share=0.3).level
        == "warning"
    )
    three = model_status(_table(["warning"] * 3 + ["ok"] * 7), warning_share=0.2, drift_share=0.3)
    assert three.level == "drift" and any("30% of features" in r for r in three.reasons)


def test_status_prediction_column_does_not_count_in_the_feature_share() -> None:
    t = _table(["warning", "ok", "ok", "ok"], roles=["prediction", "feature", "feature", "feature"])
    s = model_status(t, warning_share=0.2, drift_share=0.3)
    assert s.level == "warning" and s.reasons[0].startswith("[warning] prediction f0")


def test_missing_share_jump_is_a_data_quality_warning() -> None:
    ref = pd.DataFrame({"x": np.arange(1000.0), "y": np.arange(1000.0) % 7})
    cur = ref.copy()
    cur.loc[cur.index[::10], "x"] = np.nan  # 0% -> 10% missing; the present values do not move
    t = column_table(ref, cur, ["x", "y"], [], TH).set_index("column")
    assert (
        t.loc["x", "missing_jump"] and t.loc["x", "level"] == "warning" and t.loc["x", "effect_level"] == "ok"
    )
    assert t.loc["y", "level"] == "ok"
    s = model_status(t.reset_index(), warning_share=0.6, drift_share=0.9)
    assert s.level == "warning" and "missing share 0% → 10%" in s.reasons[0]
