"""Training-set sampling above training.max_rows: positives kept, negatives by customer, weights keep the mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rebuy.errors import DataError
from training.sampling import WEIGHT, customer_unit, sample_training_rows


def _set(n_customers: int = 20_000, cutoffs: int = 5, rate: float = 0.08, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"c{i}" for i in range(n_customers)], cutoffs)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "cutoff": np.tile(np.arange(cutoffs), n_customers),
            "repurchase": (rng.random(len(ids)) < rate).astype(float),
        }
    )


def test_under_max_rows_nothing_is_sampled():
    train = _set(100)
    out = sample_training_rows(train, "repurchase", 10_000)
    assert not out.sampled and len(out.frame) == len(train) and out.frame[WEIGHT].eq(1.0).all()
    assert not sample_training_rows(train, "repurchase", None).sampled


def test_every_positive_kept_negatives_by_customer_and_weighted_mean_preserved():
    train = _set()
    out = sample_training_rows(train, "repurchase", 20_000)
    f = out.frame
    assert out.sampled and 0.1 < out.share < 0.2
    assert f["repurchase"].eq(1).sum() == train["repurchase"].eq(1).sum()  # every positive
    assert f.loc[f["repurchase"].eq(1), WEIGHT].eq(1.0).all()
    assert np.allclose(f.loc[f["repurchase"].eq(0), WEIGHT], 1 / out.share)
    assert abs(len(f) - 20_000) < 1_000
    # a customer's negatives are all in or all out (hash of the customer, not of the row)
    neg = train.loc[train["repurchase"].eq(0)]
    kept = neg.index.isin(f.index)
    per_customer = pd.Series(kept, index=neg.index).groupby(neg["customer_id"]).agg(["min", "max"])
    assert (per_customer["min"] == per_customer["max"]).all()
    # the weighted positive rate is the full set's (calibration), within sampling noise
    full = train["repurchase"].mean()
    weighted = np.average(f["repurchase"], weights=f[WEIGHT])
    assert abs(weighted - full) / full < 0.03
    assert abs(f["repurchase"].mean() - full) / full > 0.5  # unweighted it is badly off: the weights matter
    # deterministic: the same rows on every run
    again = sample_training_rows(train.sample(frac=1, random_state=1), "repurchase", 20_000)
    assert sorted(again.frame.index) == sorted(f.index)


def test_more_positives_than_max_rows_keeps_a_floor_of_negatives():
    train = _set(2_000, rate=0.9)
    out = sample_training_rows(train, "repurchase", 500, min_share=0.05)
    assert out.share == 0.05 and out.negatives_kept > 0 and "every positive" in out.describe()


def test_customer_unit_is_uniform_and_stable():
    u = customer_unit(pd.Series([f"x{i}" for i in range(50_000)]))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert customer_unit(pd.Series(["x7"]))[0] == u[7]


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="lacks column 'churn'"):
        sample_training_rows(_set(10), "churn", 5)
    with pytest.raises(DataError, match="must be positive"):
        sample_training_rows(_set(10), "repurchase", 0)
