"""Training at scale: when a training set exceeds `training.max_rows`, keep every positive and a
customer-hash share of the negatives, weighted by the inverse share.

Why this shape: positives are the rare, informative rows (a repurchase, a churn), so they are all
kept; negatives are thinned by a hash of the customer id, so all cutoffs of one customer are in or
out together (rows of one customer are correlated; sampling them independently would overstate how
much data is left) and the same customers are chosen on every run and engine. Each kept negative
carries weight 1/share, so the weighted label mean, and with it the calibration of a probability
model, is what the full set would give. Evaluation must still use the full test set: sample the
training part only.

The training pipeline calls `sample_training_rows` on its training split and `log_sampling` inside
its MLflow run (training/pipeline.py is the train stage's; this module only offers the functions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rebuy.errors import DataError

SALT = "rebuy-sample-v1."  # 16 bytes: pandas' SipHash key; changing it changes which customers are kept
WEIGHT = "sample_weight"


@dataclass(frozen=True)
class Sampled:
    """The rows to train on (with a `sample_weight` column) and what was done, for the MLflow run."""

    frame: pd.DataFrame
    share: float  # share of negative customers kept (1.0: no sampling)
    rows_in: int
    positives: int
    negatives_kept: int

    @property
    def sampled(self) -> bool:
        return self.share < 1.0

    def describe(self) -> str:
        if not self.sampled:
            return f"no sampling: {self.rows_in:,} rows within training.max_rows"
        return (
            f"sampled {len(self.frame):,} of {self.rows_in:,} training rows: every positive ({self.positives:,}) "
            f"and {self.share:.2%} of negatives by customer hash ({self.negatives_kept:,} rows), "
            f"weighted 1/{self.share:.4g}; evaluation uses the full test set"
        )


def customer_unit(ids: pd.Series) -> np.ndarray:
    """A deterministic number in [0, 1) per customer id (SipHash with a fixed key), equal for equal ids."""
    h = pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), hash_key=SALT, categorize=True)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_training_rows(
    train: pd.DataFrame,
    label: str,
    max_rows: int | None,
    *,
    min_share: float = 0.01,
    key: str = "customer_id",
) -> Sampled:
    """Every positive (`label` > 0) and a customer-hash share of the rest, so about `max_rows` rows remain.

    Rows with a missing label count as negatives (the trainer drops them either way). The share is
    (max_rows - positives) / negatives, at least `min_share`: with more positives than `max_rows`
    the result is larger than max_rows rather than without negatives. Returns the input (weight 1)
    when it already fits.
    """
    for col in (label, key):
        if col not in train.columns:
            raise DataError(
                f"the training set lacks column {col!r}",
                column=col,
                rows=train.head(5),
                hint="pass a training set built by features.training_set.build_training_set",
            )
    if max_rows is not None and max_rows <= 0:
        raise DataError(
            f"training.max_rows must be positive, got {max_rows}", hint="unset it to never sample"
        )
    y = train[label].to_numpy(dtype=np.float64, na_value=np.nan)
    positive = y > 0
    n_pos = int(positive.sum())
    n_neg = len(train) - n_pos
    if max_rows is None or len(train) <= max_rows or n_neg == 0:
        return Sampled(train.assign(**{WEIGHT: 1.0}), 1.0, len(train), n_pos, n_neg)
    share = min(1.0, max(min_share, (max_rows - n_pos) / n_neg))
    keep_neg = ~positive & (customer_unit(train[key]) < share)
    keep = positive | keep_neg
    out = train.loc[keep].copy()
    out[WEIGHT] = np.where(positive[keep], 1.0, 1.0 / share)
    return Sampled(out, share, len(train), n_pos, int(keep_neg.sum()))


def log_sampling(sampled: Sampled) -> None:
    """Say in the active MLflow run whether and how the training rows were sampled."""
    import mlflow

    mlflow.log_params(
        {
            "train_rows_full": sampled.rows_in,
            "train_rows_used": len(sampled.frame),
            "train_negative_share": round(sampled.share, 6),
        }
    )
    mlflow.set_tag("rebuy.sampling", sampled.describe())
