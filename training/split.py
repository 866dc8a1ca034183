"""Time-ordered split, purged both ways: no training label window reaches into the validation period and no
validation label window into the test period.

Validation rows drive Optuna, early stopping and the calibrator; a validation label that counts orders from
the test period would make the test AUC and ECE optimistic, so the validation cutoffs are the latest ones
whose label window is over when the test period starts (a gap of about one horizon before the test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from rebuy.errors import DataError

if TYPE_CHECKING:
    from rebuy.config import Config
    from training.specs import ModelSpec


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame  # early stopping and Optuna's objective
    calib: pd.DataFrame  # the other validation customers (same cutoffs as valid)
    test: pd.DataFrame
    test_start: pd.Timestamp
    valid_start: pd.Timestamp
    purged_rows: int  # rows in neither part: their label window would reach the next period


def purge_cutoffs(horizon_days: int, cutoff_step_days: int) -> int:
    """Cutoffs lost in the gap before a period when label windows must end by its start (for grid sizing)."""
    return max(0, -(-horizon_days // cutoff_step_days) - 1)


def time_split(
    df: pd.DataFrame, horizon_days: int, test_cutoffs: int, valid_cutoffs: int, calib_share: float = 0.5
) -> Split:
    """Latest `test_cutoffs` cutoffs are test; validation is the latest `valid_cutoffs` before them whose
    label window (c, c + h] ends by the first test cutoff; training is every cutoff whose window ends by the
    first validation cutoff. Cutoffs in the gaps are dropped (purged).

    Validation customers are split by a stable hash of customer_id into two halves: Optuna and early
    stopping score the first; the calibrator is fitted on both and chooses its method by cross-fitting
    across them (training.calibration). No tree is ever fitted on a validation or test row.
    """
    if "cutoff" not in df.columns or "customer_id" not in df.columns:
        raise DataError(
            "training set lacks the key columns customer_id and cutoff",
            hint="build it with features.training_set.build_training_set",
        )
    cutoffs = [pd.Timestamp(c) for c in sorted(df["cutoff"].unique())]
    need = test_cutoffs + valid_cutoffs + 1
    if len(cutoffs) < need:
        raise DataError(
            f"training set has {len(cutoffs)} cutoffs; the split needs at least {need} "
            f"({test_cutoffs} test + {valid_cutoffs} validation + 1 training)",
            hint="use a longer history (features.history_days) or fewer test/validation cutoffs",
        )
    horizon = pd.Timedelta(days=horizon_days)
    test_start = cutoffs[-test_cutoffs]
    eligible = [c for c in cutoffs if c + horizon <= test_start]
    if len(eligible) < valid_cutoffs:
        raise DataError(
            f"only {len(eligible)} cutoffs have a {horizon_days}-day label window that ends before the test "
            f"period ({test_start.date()}); validation needs {valid_cutoffs} and training at least 1 more",
            hint="use a longer history (features.history_days) or a shorter horizon",
        )
    valid_cuts = eligible[-valid_cutoffs:]
    valid_start = valid_cuts[0]
    test = df[df["cutoff"] >= test_start]
    valid_all = df[df["cutoff"].isin(pd.DatetimeIndex(valid_cuts))]
    train = df[df["cutoff"] + horizon <= valid_start]
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
        purged_rows=len(df) - len(train) - len(valid_all) - len(test),
    )


def spec_grid(cfg: Config, end: pd.Timestamp, spec: ModelSpec) -> list[pd.Timestamp]:
    """The spec's cutoffs: `features.history_days` of them, plus the ones the purge before the test period
    drops (training.split), so purging both ways costs no training rows; the grid ends at the spec's label
    maturity before `end` (features.training_set.cutoff_grid)."""
    from features.training_set import cutoff_grid

    step = cfg.features.cutoff_step_days
    extra = purge_cutoffs(spec.maturity_days, step) * step
    longer = cfg.features.model_copy(update={"history_days": cfg.features.history_days + extra})
    return cutoff_grid(cfg.model_copy(update={"features": longer}), end, spec.maturity_days)
