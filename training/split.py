"""Time-ordered split with purging: no training label may peek into the validation or test period."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rebuy.errors import DataError


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame  # early stopping and Optuna's objective
    calib: pd.DataFrame  # held-out fold for the calibrator (same cutoffs as valid, other customers)
    test: pd.DataFrame
    test_start: pd.Timestamp
    valid_start: pd.Timestamp
    purged_rows: int


def time_split(
    df: pd.DataFrame, horizon_days: int, test_cutoffs: int, valid_cutoffs: int, calib_share: float = 0.5
) -> Split:
    """Latest `test_cutoffs` cutoffs are test, the `valid_cutoffs` before are validation.

    A training row at cutoff c has its label window (c, c + h]; rows with c + h > first validation cutoff
    are dropped (purged), so no training label uses an order from the validation or test period.
    Validation customers are split by a stable hash of customer_id into the early-stopping part and the
    calibration part, so the calibrator never sees rows the booster was tuned on.
    """
    if "cutoff" not in df.columns or "customer_id" not in df.columns:
        raise DataError(
            "training set lacks the key columns customer_id and cutoff",
            hint="build it with features.training_set.build_training_set",
        )
    cutoffs = sorted(df["cutoff"].unique())
    need = test_cutoffs + valid_cutoffs + 1
    if len(cutoffs) < need:
        raise DataError(
            f"training set has {len(cutoffs)} cutoffs; the split needs at least {need} "
            f"({test_cutoffs} test + {valid_cutoffs} validation + 1 training)",
            hint="use a longer history (features.history_days) or fewer test/validation cutoffs",
        )
    test_start = pd.Timestamp(cutoffs[-test_cutoffs])
    valid_start = pd.Timestamp(cutoffs[-(test_cutoffs + valid_cutoffs)])
    horizon = pd.Timedelta(days=horizon_days)
    test = df[df["cutoff"] >= test_start]
    valid_all = df[(df["cutoff"] >= valid_start) & (df["cutoff"] < test_start)]
    earlier = df[df["cutoff"] < valid_start]
    train = earlier[earlier["cutoff"] + horizon <= valid_start]
    if train.empty:
        raise DataError(
            f"no training rows left: every cutoff before {valid_start.date()} has a {horizon_days}-day label "
            "window reaching into the validation period",
            hint="use a longer history (features.history_days) or a shorter horizon",
        )
    bucket = pd.util.hash_pandas_object(valid_all["customer_id"].astype(str), index=False).to_numpy() % 1000
    in_calib = bucket < round(calib_share * 1000)
    return Split(
        train=train,
        valid=valid_all[~in_calib],
        calib=valid_all[in_calib],
        test=test,
        test_start=test_start,
        valid_start=valid_start,
        purged_rows=len(earlier) - len(train),
    )
