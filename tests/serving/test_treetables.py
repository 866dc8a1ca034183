"""Batch look-up tables (serving.treetables) and the FastBooster batch shortcuts predict what LightGBM does.

Every check compares against `Booster.predict` on the same rows: the tables may differ only by summation
order (tolerance 1e-12 relative), on rows built to hit LightGBM's edge cases — NaN, exact zeros, values
inside LightGBM's 1e-35 zero band, each threshold itself and the next float above it, +-inf — and on
boosters with each missing-value rule (NaN, zero-as-missing, none).
"""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.fastpredict import FastBooster, accelerate, shared_predictions
from serving.treetables import ZERO, TreeTables
from tests.support.synthetic import synthetic_scorer


def _train(objective: str, extra: dict | None = None, rounds: int = 40, seed: int = 0) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, 4))
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    X[rng.uniform(size=X.shape) < 0.1] = 0.0
    z = np.nan_to_num(X[:, 0]) - 0.7 * np.nan_to_num(X[:, 1]) + 0.3 * np.isnan(X[:, 2])
    if objective == "binary":
        y = (z + rng.normal(size=600) > 0).astype(float)
    elif objective in ("poisson", "tweedie"):
        y = rng.poisson(np.exp(0.4 * z)).astype(float)
    else:
        y = z + rng.normal(0, 0.1, 600)
    params = {"objective": objective, "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1}
    return lgb.train({**params, **(extra or {})}, lgb.Dataset(X, y), num_boost_round=rounds)


def _edge_rows(booster: lgb.Booster, seed: int = 1) -> np.ndarray:
    """Random rows, plus every threshold, the float above it and the zero-band values in every column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 4))
    X[rng.uniform(size=X.shape) < 0.2] = np.nan
    thresholds: list[float] = []
    for info in booster.dump_model()["tree_info"]:
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" in node:
                thresholds.append(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    special = [0.0, -0.0, ZERO, -ZERO, 1e-36, -1e-36, 2e-35, -2e-35, np.nan]
    special += thresholds + [float(np.nextafter(t, np.inf)) for t in thresholds]
    col = np.array(special)
    edge = np.column_stack([rng.permutation(col) for _ in range(4)])
    return np.vstack([X, edge])


CASES = [
    ("binary", None),
    ("regression", None),
    ("regression_l1", None),
    ("tweedie", None),
    ("poisson", None),
    ("binary", {"zero_as_missing": True}),
    ("regression", {"use_missing": False}),
]


@pytest.mark.parametrize(("objective", "extra"), CASES)
@pytest.mark.parametrize("raw_score", [False, True])
def test_tables_equal_lightgbm_on_edge_values(objective: str, extra: dict | None, raw_score: bool) -> None:
    booster = _train(objective, extra)
    tables = TreeTables.build(booster)
    assert tables is not None
    X = _edge_rows(booster)
    want = booster.predict(X, raw_score=raw_score, num_threads=1)
    got = tables.predict(X, raw_score=raw_score)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_reloaded_model_and_infinite_values_are_answered_like_lightgbm() -> None:
    # thresholds of "every number left, NaN right" splits are +inf in memory and 1e300 after a text round
    # trip; rows with inf or huge values go to LightGBM, so both readings keep their own answers
    booster = _train("binary", rounds=60)
    reloaded = lgb.Booster(model_str=booster.model_to_string())
    X = _edge_rows(booster)
    X[:20, 1] = np.inf
    X[20:40, 2] = -np.inf
    X[40:50, 0] = 1e301
    for b in (booster, reloaded):
        tables = TreeTables.build(b)
        assert tables is not None
        np.testing.assert_allclose(tables.predict(X), b.predict(X, num_threads=1), rtol=1e-12, atol=1e-12)


def test_a_small_budget_leaves_big_trees_to_lightgbm_and_stays_equal() -> None:
    booster = _train("regression", {"num_leaves": 15}, rounds=30)
    tables = TreeTables.build(booster, budget=8)
    assert tables is not None
    assert 0.0 <= tables.tabulated_share < 1.0  # some trees need more than 8 cells: walked by LightGBM
    X = _edge_rows(booster)
    np.testing.assert_allclose(tables.predict(X), booster.predict(X, num_threads=1), rtol=1e-12, atol=1e-12)


def test_unsupported_models_are_not_tabulated() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    X[:, 2] = rng.integers(0, 5, 300)
    params = {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    categorical = lgb.train(
        {**params, "objective": "regression", "min_data_per_group": 5, "cat_smooth": 1},
        lgb.Dataset(X, X[:, 2] * 2 + X[:, 0], categorical_feature=[2]),
        num_boost_round=10,
    )
    multiclass = lgb.train(
        {**params, "objective": "multiclass", "num_class": 3}, lgb.Dataset(X, rng.integers(0, 3, 300)), 5
    )
    assert TreeTables.build(categorical) is None
    assert TreeTables.build(multiclass) is None


def test_fast_booster_checks_tables_on_the_first_batch_then_uses_them() -> None:
    booster = _train("binary")
    fast = FastBooster(booster, table_min_rows=100)
    X = _edge_rows(booster)
    assert fast.uses_tables is None
    first = fast.predict(X, num_threads=1)
    np.testing.assert_array_equal(first, booster.predict(X, num_threads=1))  # the first batch is LightGBM's
    assert fast.uses_tables is not None  # decided (tables kept only if equal and faster)
    np.testing.assert_allclose(fast.predict(X, num_threads=1), first, rtol=1e-12, atol=1e-12)
    small = X[:50]  # below table_min_rows: LightGBM itself
    np.testing.assert_array_equal(fast.predict(small, num_threads=1), booster.predict(small, num_threads=1))


def test_shared_predictions_predict_an_input_once_per_block() -> None:
    booster = _train("regression")
    fast = FastBooster(booster, table_min_rows=None)
    calls: list[int] = []
    inner = fast._predict

    def counting(data: np.ndarray, kind: int, kwargs: dict) -> np.ndarray:
        calls.append(kind)
        return inner(data, kind, kwargs)

    fast._predict = counting  # type: ignore[method-assign]
    X = _edge_rows(booster)
    with shared_predictions():
        a = fast.predict(X, num_threads=1)
        a[:] = 0.0  # the caller owns what it gets: the remembered answer is not changed by this
        b = fast.predict(X, num_threads=1)
        fast.predict(X, raw_score=True, num_threads=1)
        fast.predict(X.copy(), num_threads=1)  # another array: predicted again
    np.testing.assert_array_equal(b, booster.predict(X, num_threads=1))
    assert len(calls) == 3
    fast.predict(X, num_threads=1)  # outside the block nothing is remembered
    assert len(calls) == 4


def test_accelerate_shares_one_fast_booster_between_copies_of_a_booster() -> None:
    @dataclasses.dataclass
    class Two:
        a: lgb.Booster
        b: dict[str, lgb.Booster]

    booster = _train("binary")
    copy = lgb.Booster(model_str=booster.model_to_string())
    other = _train("binary", seed=3)
    shared: dict[str, FastBooster] = {}
    m = accelerate(Two(booster, {"x": copy, "y": other}), shared)
    assert m.a is m.b["x"]
    assert m.b["y"] is not m.a
    assert len(shared) == 2


def test_scores_from_tables_equal_scores_from_lightgbm() -> None:
    """The whole scorer with every booster on the table path vs on LightGBM's own path."""
    scorer, table = synthetic_scorer(n_customers=400, rounds=20)
    ids = [str(c) for c in table.index]
    mats, cold, age = scorer.read(ids, pd.Timestamp("2025-06-30T12:00:00Z"))
    offers = scorer.eligible(None)
    want = scorer.score_matrices(ids, mats, cold, age, offers, reasons=False)
    fast = _fast_boosters(scorer)
    assert fast
    for f in fast:
        f.table_min_rows = 10
        f._tables = TreeTables.build(f.booster)  # the tables, whether or not they are faster here
        assert f._tables is not None
    got = scorer.score_matrices(ids, mats, cold, age, offers, reasons=False)
    for col in ("churn", "repurchase", "days_to_next", "value", "conversion", "margin"):
        np.testing.assert_allclose(getattr(got, col), getattr(want, col), rtol=1e-9, atol=1e-9)
    assert got.best_offer.tolist() == want.best_offer.tolist()


def _fast_boosters(scorer: object) -> list[FastBooster]:
    out: dict[int, FastBooster] = {}

    def walk(o: object) -> None:
        if isinstance(o, FastBooster):
            out[id(o)] = o
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            for f in dataclasses.fields(o):
                walk(getattr(o, f.name))

    for m in [*scorer.models.values(), scorer.offer_model]:  # type: ignore[attr-defined]
        walk(m)
    return list(out.values())
