"""Drift reports per model (Evidently), a one-line status each, an index page, and drift-triggered retraining.

Reference and current
  Reference is the champion's own training set — the sample the training pipeline logs with the model
  (MLflow artifact `reference/reference.parquet`): the model learned exactly this distribution, so it
  is what "unchanged" means. Current is what the model sees now: served rows from the prediction log
  (features + score) in the last `drift.current_window_days`, or features computed at `--as-of`.

Sample sizes
  Both sides are sampled to `drift.reference_sample` / `drift.current_sample` rows (default 5,000).
  Effect sizes (not p-values, see `pipelines.drift_stats`) do not become oversensitive as n grows;
  n only sets how precisely they are measured. On the simulator at 5,000 rows, an unchanged shop's
  largest column effect is typically 0.05–0.12 and the per-column noise floors 0.05–0.2, while the
  bars' shifts give 0.16–0.45 on their features: warning at 0.1, drift at 0.15, each only above the
  column's noise floor. A season-matched reference is smaller (a quarter of a year's cutoffs); the
  floor rises with it instead of the status turning noisy. Evidently only ever sees the samples, so
  100k current rows cost the sampling and nothing more (benchmarks/drift.py).

Age structure (why the reference is the most recent rows, matched on tenure)
  A shop ages: between a training cutoff and today every customer is older, so tenure, days since the last
  order and every lifetime or windowed count move although nobody behaves differently. Measured on a
  3,000-customer, 18-month simulated shop (all features, 5,000-row samples): the same shop compared with
  itself 28 days earlier flags nothing, 56 days earlier flags tenure, orders/spend in 365 days and days
  since the last order, 86 days 9 columns, 142 days 17, a year 39 — the old year-long, season-matched
  reference read drift on every fresh model. So (1) only the reference's most recent cutoffs are used
  (`recent_reference`; the adapters recompute the champion's features at its training date, the nearest
  point to serving with the same definitions), and (2) when the roles name a tenure column, reference rows
  are drawn to the current rows' tenure mix (`age_matched`): with that, 86 days of aging flag nothing
  while +20 % order values, −30 % engagement, a cart-tracking outage and a doubled share of new customers
  are still drift. The tenure column itself is judged against the reference aged to now, newcomers
  arriving at the reference's own rate (`aged_tenure`), so more new customers than aging explains is drift.
  Seasons: the most recent cutoffs are the nearest season the model knows; a season it never saw can
  still read as drift, and should.

Time of day
  Reference rows are features at midnight-UTC cutoffs; served rows come at any hour. A feature over a
  window shorter than a day (`views_1h`: `Roles.hour_sensitive`, found by `hour_sensitive()` from the
  name) measures the hour it is computed at as much as the customer: views in the hour before
  midnight UTC (1 a.m. in Berlin) are rarer than in the hour before 8 p.m., so served rows from the
  evening would "drift" on it every day. We considered reweighting by hour (impossible: the reference
  has one hour only) and recomputing served customers' features at reference-like times (that monitors
  the batch path, not what the model was served). Instead, hour-sensitive features are judged only on
  current rows whose time of day is within HOUR_TOLERANCE_MINUTES of a time of day the reference has;
  with fewer than MIN_HOUR_ROWS such rows they are left out of the status and the report names them.
  Every other feature is compared on all rows: windows of a day or more cover each hour once wherever
  they end, so their distribution does not depend on the hour (on the simulator, served rows at
  uniformly random hours against midnight cutoffs move none of them beyond noise, `tests/drift/
  test_hours.py`). Rows recomputed at midnights (the fallback current) match on every feature.

Labels
  Target and performance drift need labels, which mature `horizon_days` after the row's time:
  only current rows with timestamp + horizon ≤ as-of count; until enough have matured the report
  states that performance is not yet measurable instead of guessing.

Status
  ok / warning / drift from `pipelines.drift_stats.model_status` with the thresholds in `cfg.drift`.
  `retrain --if-drift` retrains exactly the models whose latest status is drift and records why
  (JSON next to the reports, and MLflow tags).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pipelines.drift_stats import (
    Level,
    Status,
    Thresholds,
    assess,
    column_table,
    model_status,
    worst,
)
from rebuy.config import Config, DriftConfig
from rebuy.errors import DataError, NoChampionError, RebuyError

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

STAT_TEST_NAME = "rebuy_effect"
# time-of-day matching of hour-sensitive features (see "Time of day" in the module docstring)
HOUR_TOLERANCE_MINUTES = 60
MIN_HOUR_ROWS = 200
MINUTES_PER_DAY = 24 * 60
# age matching (see `age_matched`): tenure bands of the current rows, and the fewest reference rows a band may have
TENURE_BANDS = 10
MIN_BAND_ROWS = 30
_SHORT_WINDOW = re.compile(r"_(\d+)h$")
REFERENCE_ARTIFACT = "reference/reference.parquet"
DRIFT_EXPERIMENT = "rebuy-drift"


@dataclass(frozen=True)
class Roles:
    """What each column of a model's monitoring frames is."""

    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    prediction: str | None = None
    target: str | None = None
    timestamp: str | None = None
    task: Literal["binary", "regression"] = "binary"
    horizon_days: int | None = None
    # further prediction columns (a multi-output model: the offer model's margin per offer); drift only
    predictions: tuple[str, ...] = ()
    # features whose value depends on the time of day they are computed at (windows shorter than a day):
    # compared only on current rows from the reference's times of day (see "Time of day" above)
    hour_sensitive: tuple[str, ...] = ()
    # customer tenure in days: when both sides have it, the reference is matched to the current tenure mix
    # and the tenure column itself is judged against the reference aged to now (see `age_matched`)
    tenure: str | None = None

    @property
    def prediction_columns(self) -> list[str]:
        return list(dict.fromkeys(([self.prediction] if self.prediction else []) + list(self.predictions)))

    @property
    def monitored(self) -> list[str]:
        return list(self.features) + [c for c in self.prediction_columns if c not in self.features]


@dataclass
class DriftResult:
    """Everything one model's analysis produced; `summary()` is the machine-readable form."""

    model: str
    as_of: pd.Timestamp
    status: Status
    table: pd.DataFrame
    reference: pd.DataFrame
    current: pd.DataFrame
    roles: Roles
    notes: list[str] = field(default_factory=list)
    performance: dict[str, float] = field(default_factory=dict)
    performance_level: Level = "ok"
    model_version: str | None = None
    # the rows with matured labels that `performance` was measured on (target + prediction)
    labelled: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        table = self.table.replace({np.nan: None})
        return {
            "model": self.model,
            "model_version": self.model_version,
            "as_of": self.as_of.isoformat(),
            "status": self.status.level,
            "line": self.status.line(self.model),
            "reasons": self.status.reasons,
            "notes": self.notes,
            "reference_rows": len(self.reference),
            "current_rows": len(self.current),
            "performance": self.performance,
            "performance_level": self.performance_level,
            "columns": table.to_dict(orient="records"),
        }


def thresholds(cfg: DriftConfig) -> Thresholds:
    return Thresholds(
        warning_effect=cfg.warning_effect,
        drift_effect=cfg.drift_effect,
        permutations=cfg.permutations,
        noise_z=cfg.noise_z,
        missing_delta=cfg.missing_delta,
        seed=cfg.seed,
    )


# --- input checks and preparation (pure) ----------------------------------------------------------


def check_frames(
    reference: pd.DataFrame, current: pd.DataFrame, roles: Roles, *, reference_name: str, current_name: str
) -> None:
    """Refuse frames the analysis cannot use, naming the source, the column and what to do."""
    for frame, name in ((reference, reference_name), (current, current_name)):
        if frame.empty:
            raise DataError(
                "no rows to compare", file=name, hint="check the time window and that the source is written"
            )
        missing = [c for c in roles.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"feature columns missing: {missing}",
                file=name,
                column=missing[0],
                hint="the reference and the current rows must carry the model's features under the same names",
            )
        if roles.timestamp and roles.timestamp in frame.columns:
            ts = frame[roles.timestamp]
            if not isinstance(ts.dtype, pd.DatetimeTZDtype):
                raise DataError(
                    f"timestamp column is {ts.dtype}, not a timezone-aware datetime",
                    file=name,
                    column=roles.timestamp,
                    rows=frame[[roles.timestamp]].head(5),
                    hint="write timestamps as UTC-aware datetimes",
                )
    numeric = [c for c in roles.monitored if c not in roles.categorical]
    for frame, name in ((reference, reference_name), (current, current_name)):
        for col in numeric:
            if col in frame.columns and not (
                pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col])
            ):
                bad = frame[pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()]
                raise DataError(
                    f"numerical column holds non-numbers ({frame[col].dtype})",
                    file=name,
                    column=col,
                    rows=bad[[col]].head(5),
                    row_numbers=[int(i) + 1 for i in bad.index[:5]],
                    hint="declare the column categorical in the roles, or fix its values",
                )


def recent_reference(
    reference: pd.DataFrame, timestamp: str | None, min_rows: int
) -> tuple[pd.DataFrame, str]:
    """The reference's most recent cutoffs: the latest ones that together hold at least `min_rows` rows.

    The cutoffs nearest the serving period are the training rows whose shop is most like today's (its
    age, its season); what is still left of aging is matched on tenure (`age_matched`).
    """
    if not timestamp or timestamp not in reference.columns or reference.empty:
        return reference, "no timestamp on the reference: all of it is used"
    counts = reference[timestamp].value_counts().sort_index(ascending=False)
    keep = counts.index[: int(np.searchsorted(counts.cumsum().to_numpy(), min_rows)) + 1]
    out = reference[reference[timestamp].isin(keep)]
    lo, hi = min(keep), max(keep)
    span = f"{hi:%Y-%m-%d}" if lo == hi else f"{lo:%Y-%m-%d} … {hi:%Y-%m-%d}"
    return (
        out,
        f"reference: {len(out)} of {len(reference)} rows, its {len(keep)} most recent cutoff(s) ({span})",
    )


def _band_edges(values: np.ndarray, bands: int) -> np.ndarray:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bands + 1)[1:-1]))
    return np.concatenate([[-np.inf], edges, [np.inf]])


def age_matched(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tenure: str,
    seed: int,
    *,
    bands: int = TENURE_BANDS,
    min_band_rows: int = MIN_BAND_ROWS,
) -> tuple[pd.DataFrame, str]:
    """Reference rows resampled (without replacement) to the current rows' tenure mix. Pure.

    A shop ages: between the reference's cutoffs and today every customer is older, so tenure, days
    since the last order and every windowed or lifetime count move although nobody behaves differently
    (benchmarks/results/drift.md measures it). Comparing customers of the same tenure band removes that;
    the tenure mix itself is judged separately against the aged reference (`aged_tenure`). Bands are the
    current tenure's deciles; a band with fewer than `min_band_rows` reference rows is merged into its
    neighbour, so the oldest customers of today are compared with the oldest the reference has.
    """
    ref_t = reference[tenure].to_numpy(dtype=float)
    cur_t = current[tenure].to_numpy(dtype=float)
    ok_ref, ok_cur = np.isfinite(ref_t), np.isfinite(cur_t)
    if ok_ref.sum() < min_band_rows or ok_cur.sum() < min_band_rows:
        return reference, f"too few rows with {tenure} to match tenure: the reference is not age-matched"
    edges = _band_edges(cur_t[ok_cur], bands)
    while len(edges) > 2:
        counts = np.histogram(ref_t[ok_ref], edges)[0]
        sparse = np.flatnonzero(counts < min_band_rows)
        if not len(sparse):
            break
        i = int(sparse[-1])  # merge the sparse band with its older neighbour (or younger, for the last)
        edges = np.delete(edges, i + 1 if i + 1 < len(edges) - 1 else i)
    ref_band = np.digitize(ref_t, edges[1:-1])
    cur_band = np.digitize(cur_t, edges[1:-1])
    n_bands = len(edges) - 1
    p_cur = np.bincount(cur_band[ok_cur], minlength=n_bands) / ok_cur.sum()
    have = np.bincount(ref_band[ok_ref], minlength=n_bands)
    need = p_cur > 0
    total = int(min(ok_ref.sum(), np.min(have[need] / p_cur[need])))
    rng = np.random.default_rng(seed)
    parts = [np.flatnonzero(~ok_ref)] if (~ok_ref).any() else []
    for b in np.flatnonzero(need):
        idx = np.flatnonzero(ok_ref & (ref_band == b))
        parts.append(rng.choice(idx, size=min(len(idx), round(total * p_cur[b])), replace=False))
    out = reference.iloc[np.sort(np.concatenate(parts))].reset_index(drop=True)
    return out, (
        f"age-matched: {len(out)} of {len(reference)} reference rows drawn to the current {tenure} mix "
        f"({n_bands} bands), so aging alone does not read as drift"
    )


def aged_tenure(reference: pd.DataFrame, tenure: str, timestamp: str, at: pd.Timestamp) -> pd.Series:
    """The reference's tenure as it would read at `at` if acquisition went on as before. Pure.

    Every reference customer is `gap` days older, and the customers who joined in the gap look like the
    reference's own customers who had joined in the `gap` days before its cutoff. So a doubled share of new
    customers is still drift, while the shop merely aging is not.
    """
    t = reference[tenure].to_numpy(dtype=float)
    gap = ((at - reference[timestamp]).dt.total_seconds() / 86400.0).clip(lower=0).to_numpy()
    newcomers = t[np.isfinite(t) & (t < gap)]
    return pd.Series(np.concatenate([t + gap, newcomers]), name=tenure)


def sample_matched(
    reference: pd.DataFrame, current: pd.DataFrame, timestamp: str | None, n_ref: int, n_cur: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Sample both sides to at most n rows with the same weekday mix (the reference's, over shared weekdays)."""
    rng = np.random.default_rng(seed)

    def plain(df: pd.DataFrame, n: int) -> pd.DataFrame:
        if len(df) <= n:
            return df.reset_index(drop=True)
        return df.iloc[np.sort(rng.choice(len(df), size=n, replace=False))].reset_index(drop=True)

    if not timestamp or timestamp not in reference.columns or timestamp not in current.columns:
        return plain(reference, n_ref), plain(current, n_cur), "no timestamp: weekday mix not matched"
    wd_ref = reference[timestamp].dt.dayofweek
    wd_cur = current[timestamp].dt.dayofweek
    shared = sorted(set(wd_ref.unique()) & set(wd_cur.unique()))
    if not shared:
        return (
            plain(reference, n_ref),
            plain(current, n_cur),
            (
                "reference and current share no weekday: weekday mix not matched, short-window features may differ"
            ),
        )
    mix = wd_ref[wd_ref.isin(shared)].value_counts(normalize=True)
    counts_ref = wd_ref.value_counts()
    counts_cur = wd_cur.value_counts()
    # the largest totals that the target mix allows on each side
    total_ref = min(n_ref, int(min(counts_ref[d] / mix[d] for d in shared)))
    total_cur = min(n_cur, int(min(counts_cur[d] / mix[d] for d in shared)))

    def strat(df: pd.DataFrame, wd: pd.Series, total: int) -> pd.DataFrame:
        parts = []
        for d in shared:
            idx = np.flatnonzero((wd == d).to_numpy())
            k = min(len(idx), round(total * mix[d]))
            parts.append(rng.choice(idx, size=k, replace=False))
        return df.iloc[np.sort(np.concatenate(parts))].reset_index(drop=True)

    ref_s = strat(reference, wd_ref, total_ref)
    cur_s = strat(current, wd_cur, total_cur)
    dropped = int((~wd_cur.isin(shared)).sum())
    note = f"weekday mix matched over {len(shared)} weekday(s)"
    if dropped:
        note += f"; {dropped} current rows on weekdays the reference lacks were left out"
    return ref_s, cur_s, note


def hour_sensitive(features: Sequence[str]) -> tuple[str, ...]:
    """Features over windows shorter than a day (name ends in `_<n>h` with n < 24, e.g. `views_1h`)."""
    out = []
    for f in features:
        m = _SHORT_WINDOW.search(f)
        if m and int(m.group(1)) < 24:
            out.append(f)
    return tuple(out)


def _minute_of_day(ts: pd.Series) -> np.ndarray:
    return (ts.dt.hour * 60 + ts.dt.minute).to_numpy()


def time_of_day_matched(
    reference: pd.DataFrame, current: pd.DataFrame, timestamp: str | None, tolerance_minutes: int
) -> pd.DataFrame | None:
    """Current rows whose time of day (UTC) lies within `tolerance_minutes` of one the reference has.

    None when a side has no timestamp (nothing to match on). The distance is circular: 23:30 is 30
    minutes from a midnight cutoff.
    """
    if not timestamp or timestamp not in reference.columns or timestamp not in current.columns:
        return None
    ref_minutes = np.unique(_minute_of_day(reference[timestamp]))
    cur = _minute_of_day(current[timestamp])
    d = np.abs(cur[:, None] - ref_minutes[None, :]) % MINUTES_PER_DAY
    near = np.minimum(d, MINUTES_PER_DAY - d).min(axis=1) <= tolerance_minutes
    return current[near]


def _times_of_day(frame: pd.DataFrame, timestamp: str) -> str:
    minutes = sorted(set(_minute_of_day(frame[timestamp]).tolist()))
    shown = ", ".join(f"{m // 60:02d}:{m % 60:02d}" for m in minutes[:4])
    return shown + (f" and {len(minutes) - 4} more" if len(minutes) > 4 else "")


def mature_labels(current: pd.DataFrame, roles: Roles, as_of: pd.Timestamp) -> pd.DataFrame:
    """Blank the target where its horizon has not passed by `as_of`: an immature label is not a label."""
    if not roles.target or roles.target not in current.columns:
        return current
    if not roles.timestamp or roles.horizon_days is None or roles.timestamp not in current.columns:
        return current
    out = current.copy()
    due = out[roles.timestamp] + pd.Timedelta(days=roles.horizon_days)
    out[roles.target] = out[roles.target].where(due <= as_of)
    return out


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); avoids importing scikit-learn here."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def performance(
    reference: pd.DataFrame, current: pd.DataFrame, roles: Roles, cfg: DriftConfig
) -> tuple[dict[str, float], Level, str | None]:
    """Model quality on reference vs matured current rows; (metrics, level, note when not measurable)."""
    t, p = roles.target, roles.prediction
    if not t or not p or t not in reference.columns or t not in current.columns or p not in current.columns:
        return {}, "ok", "no labels and predictions on both sides: performance not measured"
    ref = reference[[t, p]].dropna()
    cur = current[[t, p]].dropna()
    if len(cur) < cfg.min_labelled_rows or len(ref) < cfg.min_labelled_rows:
        return (
            {},
            "ok",
            f"{len(cur)} current rows with matured labels (< {cfg.min_labelled_rows}): performance not yet measurable",
        )
    if roles.task == "binary":
        if ref[t].nunique() < 2 or cur[t].nunique() < 2:
            return {}, "ok", "matured labels have one class only: AUC not measurable"
        ref_auc = _auc(ref[t].to_numpy(), ref[p].to_numpy())
        cur_auc = _auc(cur[t].to_numpy(), cur[p].to_numpy())
        drop = ref_auc - cur_auc
        level: Level = "drift" if drop >= cfg.auc_drop else "warning" if drop >= cfg.auc_drop / 2 else "ok"
        return {"reference_auc": ref_auc, "current_auc": cur_auc, "auc_drop": drop}, level, None
    ref_mae = float(np.mean(np.abs(ref[t] - ref[p])))
    cur_mae = float(np.mean(np.abs(cur[t] - cur[p])))
    rise = cur_mae / ref_mae - 1 if ref_mae > 0 else 0.0
    level = "drift" if rise >= cfg.mae_rise else "warning" if rise >= cfg.mae_rise / 2 else "ok"
    return {"reference_mae": ref_mae, "current_mae": cur_mae, "mae_rise": rise}, level, None


Z95 = 1.959964


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from its value and class counts (Hanley & McNeil 1982)."""
    if n_pos < 1 or n_neg < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def performance_vs_champion(
    labelled: pd.DataFrame, roles: Roles, champion: Mapping[str, float], cfg: DriftConfig
) -> tuple[dict[str, float], Level, str]:
    """Matured served predictions against the champion's own test figures, with 95% intervals. Pure.

    Binary: AUC (served − test; the interval of the difference from both sides' Hanley-McNeil errors) and
    calibration in the large (mean prediction against the observed rate and its binomial interval).
    Regression: MAE (served − test; the served side's standard error). Drift when the whole interval lies
    on the bad side — a drop the sample cannot explain — whatever the features say; warning when the
    point estimate is past `auc_drop` / `mae_rise` / `calibration_tolerance` but the interval still reaches
    the champion's figure (too few matured rows to be sure).
    """
    t, p = roles.target, roles.prediction
    if not t or not p or t not in labelled.columns or p not in labelled.columns:
        return {}, "ok", "no matured labels and predictions: performance not measured"
    rows = labelled[[t, p]].dropna()
    n = len(rows)
    if n < cfg.min_labelled_rows:
        return (
            {},
            "ok",
            f"{n} served predictions with matured labels (< {cfg.min_labelled_rows}): not yet measurable",
        )
    y, s = rows[t].to_numpy(dtype=float), rows[p].to_numpy(dtype=float)
    levels: list[Level] = []
    out: dict[str, float] = {"matured_rows": float(n)}
    if roles.task == "binary":
        n_pos = int((y == 1).sum())
        if n_pos == 0 or n_pos == n:
            return {}, "ok", "matured labels have one class only: AUC not measurable"
        auc = _auc(y, s)
        test_auc = float(champion["roc_auc"])
        test_n = int(champion.get("test_rows", 0))
        test_pos = round(test_n * float(champion.get("positive_rate", 0.5)))
        se = np.sqrt(
            auc_se(auc, n_pos, n - n_pos) ** 2
            + np.nan_to_num(auc_se(test_auc, test_pos, test_n - test_pos)) ** 2
        )
        diff = auc - test_auc
        out |= {
            "auc": auc,
            "test_auc": test_auc,
            "auc_diff": diff,
            "auc_diff_lo": diff - Z95 * se,
            "auc_diff_hi": diff + Z95 * se,
        }
        levels.append("drift" if diff + Z95 * se < 0 else "warning" if -diff >= cfg.auc_drop else "ok")
        rate, mean_p = float(y.mean()), float(s.mean())
        half = Z95 * np.sqrt(rate * (1 - rate) / n)
        out |= {
            "observed_rate": rate,
            "observed_lo": rate - half,
            "observed_hi": rate + half,
            "mean_prediction": mean_p,
        }
        off = abs(mean_p / rate - 1) if rate > 0 else float("inf")
        outside = not (rate - half <= mean_p <= rate + half)
        levels.append(
            "drift"
            if outside and off >= cfg.calibration_tolerance
            else "warning"
            if off >= cfg.calibration_tolerance
            else "ok"
        )
    else:
        err = np.abs(y - s)
        mae, test_mae = float(err.mean()), float(champion["mae"])
        # the test side's error spread is not logged: it is taken to be the served side's
        sd = float(err.std(ddof=1))
        test_n = int(champion.get("test_rows", 0))
        se = sd * np.sqrt(1 / n + (1 / test_n if test_n else 0.0))
        diff = mae - test_mae
        rise = mae / test_mae - 1 if test_mae > 0 else 0.0
        out |= {
            "mae": mae,
            "test_mae": test_mae,
            "mae_diff_lo": diff - Z95 * se,
            "mae_diff_hi": diff + Z95 * se,
            "mae_rise": rise,
        }
        levels.append("drift" if diff - Z95 * se > 0 else "warning" if rise >= cfg.mae_rise else "ok")
    return (
        out,
        worst(levels),
        f"performance on {n} matured served predictions against the champion's test figures",
    )


def _hour_sensitive_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    hourly: list[str],
    roles: Roles,
    cfg: DriftConfig,
    th: Thresholds,
    role_of: dict[str, str],
) -> tuple[pd.DataFrame | None, str | None]:
    """Hour-sensitive columns judged on current rows from the reference's times of day only.

    (None, note) when every current row is from those times (they are judged with the rest);
    (empty table, note) when fewer than MIN_HOUR_ROWS are: they are left out of the status.
    """
    if not hourly or not roles.timestamp:
        return None, None
    matched = time_of_day_matched(reference, current, roles.timestamp, HOUR_TOLERANCE_MINUTES)
    if matched is None or len(matched) == len(current):
        return None, None
    when = _times_of_day(reference, roles.timestamp)
    if len(matched) < MIN_HOUR_ROWS:
        return pd.DataFrame(), (
            f"hour-sensitive {hourly} not compared: {len(matched)} of {len(current)} current rows are within "
            f"±{HOUR_TOLERANCE_MINUTES} min of the reference's times of day ({when} UTC), fewer than "
            f"{MIN_HOUR_ROWS}; windows shorter than a day depend on the hour they are computed at"
        )
    ref_h, cur_h, _ = sample_matched(
        reference, matched, roles.timestamp, cfg.reference_sample, cfg.current_sample, cfg.seed
    )
    table = column_table(ref_h, cur_h, hourly, roles.categorical, th, role_of)
    return table, (
        f"hour-sensitive {hourly} compared on the {len(cur_h)} current rows within ±{HOUR_TOLERANCE_MINUTES} min "
        f"of the reference's times of day ({when} UTC); the other columns on all rows"
    )


def analyse(
    model: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    roles: Roles,
    cfg: DriftConfig,
    as_of: pd.Timestamp,
    *,
    reference_name: str = "reference",
    current_name: str = "current",
    model_version: str | None = None,
    labelled: pd.DataFrame | None = None,
    champion: Mapping[str, float] | None = None,
) -> DriftResult:
    """Most recent reference rows, age-matched, sampled; score every monitored column and decide the status. Pure.

    `labelled` are current-period rows old enough for their labels to have matured (with target and
    prediction); without it, target and performance use the current rows whose labels matured.
    """
    check_frames(reference, current, roles, reference_name=reference_name, current_name=current_name)
    notes: list[str] = []
    ref, note = recent_reference(reference, roles.timestamp, cfg.min_reference_rows)
    notes.append(note)
    ref_recent = ref
    tenure = roles.tenure if roles.tenure in ref.columns and roles.tenure in current.columns else None
    if tenure:
        ref, note = age_matched(ref, current, tenure, cfg.seed)
        notes.append(note)
    ref_s, cur_s, note = sample_matched(
        ref, current, roles.timestamp, cfg.reference_sample, cfg.current_sample, cfg.seed
    )
    notes.append(note)
    cur_s = mature_labels(cur_s, roles, as_of)
    cols = [c for c in roles.monitored if c in ref_s.columns and c in cur_s.columns]
    absent = [c for c in roles.prediction_columns if c not in cols]
    if absent:
        notes.append(f"prediction column(s) {absent} not on both sides: their drift is not measured")
    role_of = {c: "feature" for c in roles.features}
    role_of.update({c: "prediction" for c in roles.prediction_columns})
    th = thresholds(cfg)
    hourly = [c for c in roles.hour_sensitive if c in cols]
    by_hour, hour_note = _hour_sensitive_table(ref, current, hourly, roles, cfg, th, role_of)
    if hour_note:
        notes.append(hour_note)
    if by_hour is not None:
        cols = [c for c in cols if c not in hourly]
    table = column_table(ref_s, cur_s, cols, roles.categorical, th, role_of)
    if tenure and tenure in cols and roles.timestamp in cur_s.columns:
        # the tenure mix against the reference aged to the current rows' time, not the age-matched one
        at = cur_s[roles.timestamp].min() + (cur_s[roles.timestamp].max() - cur_s[roles.timestamp].min()) / 2
        aged = aged_tenure(ref_recent, tenure, roles.timestamp, at)
        aged = aged.sample(min(len(aged), cfg.reference_sample), random_state=cfg.seed).reset_index(drop=True)
        row = column_table(aged.to_frame(), cur_s, [tenure], (), th, role_of)
        table = pd.concat([table[table["column"] != tenure], row], ignore_index=True).sort_values(
            "effect", ascending=False, na_position="last", ignore_index=True
        )
        notes.append(
            f"{tenure} compared with the reference aged to {at:%Y-%m-%d} (newcomers at its own rate)"
        )
    if by_hour is not None and len(by_hour):
        table = pd.concat([table, by_hour], ignore_index=True).sort_values(
            "effect", ascending=False, na_position="last", ignore_index=True
        )
    target_level: Level = "ok"
    lab = mature_labels(labelled, roles, as_of) if labelled is not None else cur_s
    if roles.target and roles.target in ref_s.columns and roles.target in lab.columns:
        ref_t, cur_t = ref_s[roles.target].dropna(), lab[roles.target].dropna()
        if len(cur_t) >= cfg.min_labelled_rows:
            a = assess(ref_t, cur_t, roles.task == "binary", th, seed=th.seed)
            # a moved target alone is a warning: the base rate changed, the model may still rank well
            target_level = "warning" if a.level != "ok" else "ok"
            notes.append(
                f"target {roles.target}: effect {a.effect:.3f} on {len(cur_t)} matured rows "
                f"(floor {a.floor:.3f})"
            )
    if champion:
        perf, perf_level, perf_note = performance_vs_champion(lab, roles, champion, cfg)
    else:
        perf, perf_level, perf_note = performance(ref_s, lab, roles, cfg)
    if perf_note:
        notes.append(perf_note)
    status = model_status(
        table,
        warning_share=cfg.warning_share,
        drift_share=cfg.drift_share,
        performance=perf,
        performance_level=perf_level,
    )
    if target_level != "ok":
        status = Status(
            worst([status.level, target_level]), [*status.reasons, f"[{target_level}] target drift"]
        )
    return DriftResult(
        model=model,
        as_of=as_of,
        status=status,
        table=table,
        reference=ref_s,
        current=cur_s,
        roles=roles,
        notes=notes,
        performance=perf,
        performance_level=perf_level,
        model_version=model_version,
        labelled=lab if perf else None,
    )


# --- Evidently -------------------------------------------------------------------------------------


def _register_stat_test(th: Thresholds, known: Mapping[str, tuple[float, float]]) -> None:
    """Register `rebuy_effect` with Evidently (at call time) so its report shows our numbers.

    Evidently calls a column's test up to four times (count, value, two legacy widgets); `known`
    holds each analysed column's (effect, noise floor) so those calls are lookups, not recomputations
    with permutations, and the report cannot disagree with the status. Other columns are computed.
    """
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    def impl(ref: pd.Series, cur: pd.Series, feature_type: Any, threshold: float) -> tuple[float, bool]:
        if ref.name in known:
            effect, floor = known[str(ref.name)]
        else:
            a = assess(ref, cur, feature_type == ColumnType.Categorical, th, seed=th.seed)
            effect, floor = a.effect, a.floor
        return effect, bool(effect >= threshold and effect > floor)

    register_stattest(
        StatTest(
            name=STAT_TEST_NAME,
            display_name="effect size (hurdle Wasserstein / Cohen's w) above noise floor",
            allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
            default_threshold=th.warning_effect,
        ),
        impl,
    )


def _detail_columns(result: DriftResult, limit: int) -> list[str]:
    t = result.table
    if t.empty:
        return []
    moved = t[(t["level"] != "ok") | (t["role"] == "prediction")]["column"].tolist()
    return list(dict.fromkeys(moved))[:limit]


def evidently_report(result: DriftResult, cfg: DriftConfig) -> Snapshot:
    """Feature + prediction drift (our stat test at the warning threshold), data quality, target drift.

    Evidently renders a distribution plot per column and metric, which is where its time goes; it only
    ever sees the already-sampled frames, so its cost does not grow with the size of the current window.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DatasetStats, ValueStats

    th = thresholds(cfg)
    t = result.table
    known = {
        str(c): (float(e), float(f))
        for c, e, f in zip(t["column"], t["effect"], t["noise_floor"], strict=True)
    }
    _register_stat_test(th, known)
    roles = result.roles
    cols = list(result.table["column"]) if not result.table.empty else []
    extra = [roles.target] if roles.target and roles.target in result.current.columns else []
    keep = [c for c in cols + extra if c in result.reference.columns]
    # Evidently refuses a column that is empty on either side (e.g. an event feature no served customer
    # had); rebuy's own analysis above already judged it, so it is only left out of Evidently's view
    empty = {c for c in keep if result.current[c].isna().all() or result.reference[c].isna().all()}
    if empty:
        result.notes.append(f"left out of the Evidently report (empty on one side): {sorted(empty)}")
    keep = [c for c in keep if c not in empty]
    cols = [c for c in cols if c not in empty]
    extra = [c for c in extra if c not in empty]
    cats = [c for c in keep if c in roles.categorical or (c == roles.target and roles.task == "binary")]
    nums = [c for c in keep if c not in cats]
    definition = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    metrics: list[Any] = [
        DataDriftPreset(
            columns=cols,
            method=STAT_TEST_NAME,
            threshold=th.warning_effect,
            drift_share=cfg.drift_share,
        ),
        # data quality: dataset-level counts for all columns; full value statistics only for the columns
        # that moved (and the prediction) — per-column plots for 40+ columns would dominate the run time
        DatasetStats(),
        *[ValueStats(column=c) for c in _detail_columns(result, cfg.detail_columns) if c not in empty],
    ]
    if extra and result.current[roles.target].notna().sum() >= cfg.min_labelled_rows:
        metrics.append(ValueDrift(column=roles.target, method=STAT_TEST_NAME, threshold=th.warning_effect))
    report = Report(metrics, metadata={"model": result.model, "status": result.status.level})
    cur = result.current[keep]
    ref = result.reference[keep]
    return report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
        name=f"{result.model} drift as of {result.as_of.isoformat()}",
    )


def evidently_performance_report(result: DriftResult) -> Snapshot | None:
    """Quality on matured labels, reference vs current (AUC and log loss, or MAE); None until measurable."""
    roles = result.roles
    if not result.performance or result.labelled is None or not roles.target or not roles.prediction:
        return None
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.metrics import MAE, LogLoss, RocAuc

    t, p = roles.target, roles.prediction
    ref = result.reference[[t, p]].dropna()
    cur = result.labelled[[t, p]].dropna()
    if roles.task == "binary":
        ref, cur = ref.astype({t: int}), cur.astype({t: int})
        definition = DataDefinition(
            classification=[BinaryClassification(target=t, prediction_probas=p)],
            numerical_columns=[p],
            categorical_columns=[t],
        )
        metrics: list[Any] = [RocAuc(), LogLoss()]
    else:
        definition = DataDefinition(regression=[Regression(target=t, prediction=p)], numerical_columns=[t, p])
        metrics = [MAE()]
    return Report(metrics, metadata={"model": result.model}).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
        name=f"{result.model} performance on matured labels as of {result.as_of.isoformat()}",
    )


# --- files, index, MLflow (adapters) -------------------------------------------------------------


def stamp(as_of: pd.Timestamp) -> str:
    return as_of.tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def write_report(
    result: DriftResult, snapshot: Snapshot | None, drift_dir: Path, performance: Snapshot | None = None
) -> Path:
    """Write report.html, evidently.json, summary.json (and performance.*) into drift_dir/<model>/<as-of>/.

    Files are written to a temporary sibling directory and swapped in, so a crash never leaves a
    half-written report that the index would link.
    """
    final = drift_dir / result.model / stamp(result.as_of)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        if snapshot is not None:
            snapshot.save_html(str(tmp / "report.html"))
            (tmp / "evidently.json").write_text(snapshot.json(), encoding="utf-8")
        if performance is not None:
            performance.save_html(str(tmp / "performance.html"))
            (tmp / "performance.json").write_text(performance.json(), encoding="utf-8")
        (tmp / "summary.json").write_text(
            json.dumps(result.summary(), indent=2, default=str), encoding="utf-8"
        )
        if final.exists():
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_summaries(drift_dir: Path) -> list[dict[str, Any]]:
    """Every written summary.json under drift_dir (with its folder), oldest first per model."""
    out = []
    for path in sorted(drift_dir.glob("*/*/summary.json")):
        if path.parent.name.startswith("."):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        data["_dir"] = str(path.parent.relative_to(drift_dir))
        out.append(data)
    return sorted(out, key=lambda s: (s["model"], s["as_of"]))


def latest_by_model(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    latest: dict[str, Mapping[str, Any]] = {}
    for s in summaries:
        if s["model"] not in latest or s["as_of"] >= latest[s["model"]]["as_of"]:
            latest[s["model"]] = s
    return latest


_COLOURS = {"ok": "#1a7f37", "warning": "#b7791f", "drift": "#c62828"}


def render_index(
    summaries: Sequence[Mapping[str, Any]],
    generated_at: pd.Timestamp,
    unmonitored: Mapping[str, str] | None = None,
) -> str:
    """The reviewer's one page: every model's latest status, why, top moved columns, history, links.

    `unmonitored`: models the latest run could not analyse and why (e.g. no champion yet), so a model
    missing from the page is never mistaken for a model without drift.
    """
    esc = html.escape
    latest = latest_by_model(summaries)
    history: dict[str, list[Mapping[str, Any]]] = {}
    for s in summaries:
        history.setdefault(s["model"], []).append(s)
    cards = []
    counts = {lv: 0 for lv in _COLOURS}
    for model in sorted(latest):
        s = latest[model]
        counts[s["status"]] = counts.get(s["status"], 0) + 1
        colour = _COLOURS.get(s["status"], "#555")
        rows = []
        for c in s["columns"][:6]:
            eff = c.get("effect")
            width = 0 if eff is None else min(100.0, 100.0 * eff / 0.5)
            rows.append(
                f"<tr><td>{esc(str(c['column']))}</td><td class=role>{esc(str(c['role']))}</td>"
                f"<td class=num>{'—' if eff is None else f'{eff:.3f}'}</td>"
                f"<td><div class=bar><span style='width:{width:.0f}%;background:{_COLOURS.get(c['level'], '#555')}'>"
                f"</span></div></td><td><span class='pill {esc(c['level'])}'>{esc(c['level'])}</span></td></tr>"
            )
        dots = "".join(
            f"<a href='{esc(h['_dir'])}/report.html' title='{esc(h['as_of'])}: {esc(h['status'])}' "
            f"class='dot {esc(h['status'])}'></a>"
            for h in history[model][-20:]
        )
        reasons = (
            "".join(f"<li>{esc(r)}</li>" for r in s["reasons"][:4])
            or "<li>nothing moved beyond thresholds</li>"
        )
        perf = (
            ", ".join(f"{k} {v:.3f}" for k, v in (s.get("performance") or {}).items())
            or "labels not matured yet"
        )
        version = f" v{esc(str(s['model_version']))}" if s.get("model_version") else ""
        cards.append(
            f"<section class=card style='border-top:6px solid {colour}'>"
            f"<header><h2>{esc(model)}{version}</h2><span class='pill big {esc(s['status'])}'>{esc(s['status'])}</span>"
            f"</header><p class=meta>as of {esc(s['as_of'])} · reference {s['reference_rows']:,} rows · current "
            f"{s['current_rows']:,} rows · performance: {esc(perf)}</p><ul class=reasons>{reasons}</ul>"
            f"<table><thead><tr><th>column</th><th>role</th><th>effect</th><th></th><th>level</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"<details><summary>how it was compared</summary><ul class=reasons>"
            f"{''.join(f'<li>{esc(n)}</li>' for n in s.get('notes', []))}</ul></details>"
            f"<p class=history>history {dots}</p>"
            f"<p class=links><a href='{esc(s['_dir'])}/report.html'>Evidently report</a> · "
            f"<a href='{esc(s['_dir'])}/summary.json'>summary.json</a> · "
            f"<a href='{esc(s['_dir'])}/evidently.json'>evidently.json</a>"
            + (
                f" · <a href='{esc(s['_dir'])}/performance.html'>performance</a>"
                if s.get("performance")
                else ""
            )
            + "</p></section>"
        )
    for model, reason in sorted((unmonitored or {}).items()):
        if model in latest:
            continue
        cards.append(
            f"<section class=card style='border-top:6px solid #555'><header><h2>{esc(model)}</h2>"
            f"<span class='pill big none'>not monitored</span></header><ul class=reasons><li>{esc(reason)}"
            f"</li></ul></section>"
        )
    tally = " · ".join(f"<span class='pill {lv}'>{n} {lv}</span>" for lv, n in counts.items())
    body = "".join(cards) or "<p>No drift reports yet: run <code>rebuy drift</code>.</p>"
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>rebuy — drift</title>
<meta name=viewport content="width=device-width,initial-scale=1"><style>
body{{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f4f5f7;color:#1f2328}}
main{{max-width:1200px;margin:0 auto;padding:24px}} h1{{margin:0 0 4px}} .sub{{color:#57606a;margin:0 0 20px}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:18px}}
.card{{background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}}
.card header{{display:flex;justify-content:space-between;align-items:center}} h2{{margin:0;font-size:19px}}
.meta{{color:#57606a;font-size:13px}} .reasons{{padding-left:18px;font-size:13px}}
table{{width:100%;border-collapse:collapse;font-size:13px}} td,th{{padding:3px 4px;text-align:left}}
th{{color:#57606a;font-weight:600;border-bottom:1px solid #d0d7de}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
.role{{color:#57606a}} .bar{{background:#eaeef2;border-radius:3px;height:8px;width:110px}}
.bar span{{display:block;height:8px;border-radius:3px}}
.pill{{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px}}
.pill.big{{font-size:14px;padding:3px 12px}} .ok{{background:#1a7f37}} .warning{{background:#b7791f}}
.drift{{background:#c62828}} .none{{background:#555}} .dot{{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:3px}}
.history,.links{{font-size:13px;color:#57606a}} a{{color:#0969da}}
details{{font-size:13px;color:#57606a;margin-top:8px}} summary{{cursor:pointer}}
</style></head><body><main><h1>rebuy — drift</h1>
<p class=sub>Latest report per model, generated {esc(generated_at.isoformat())}. {tally}<br>
Effect = distribution shift in units of the reference's spread (hurdle Wasserstein, Cohen's w); a column is
flagged only above its permutation noise floor.</p><div class=grid>{body}</div></main></body></html>
"""


def write_index(
    drift_dir: Path, generated_at: pd.Timestamp, unmonitored: Mapping[str, str] | None = None
) -> Path:
    """(Re)write drift_dir/index.html atomically from every summary on disk (and the unmonitored models)."""
    drift_dir.mkdir(parents=True, exist_ok=True)
    page = render_index(read_summaries(drift_dir), generated_at, unmonitored)
    target = drift_dir / "index.html"
    fd, tmp = tempfile.mkstemp(prefix=".index.", dir=drift_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, target)
    return target


def log_to_mlflow(cfg: Config, result: DriftResult, report_dir: Path) -> str:
    """One MLflow run per model report (experiment `rebuy-drift`); returns the run id."""
    import mlflow

    from training.registry import experiment_id

    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, DRIFT_EXPERIMENT))
    with mlflow.start_run(run_name=f"drift-{result.model}-{stamp(result.as_of)}") as run:
        mlflow.set_tags(
            {
                "rebuy.model": result.model,
                "rebuy.model_version": str(result.model_version),
                "rebuy.drift_status": result.status.level,
                "rebuy.as_of": result.as_of.isoformat(),
            }
        )
        mlflow.log_params({"reference_rows": len(result.reference), "current_rows": len(result.current)})
        t = result.table
        metrics = {"max_effect": float(t["effect"].max()) if len(t) else 0.0}
        if len(t):
            feats = t[t["role"] == "feature"]
            metrics["share_flagged"] = float((feats["level"] != "ok").mean()) if len(feats) else 0.0
            for col, eff in zip(t["column"], t["effect"].astype(float), strict=True):
                if np.isfinite(eff):
                    metrics[f"effect.{col}"] = float(eff)
        metrics.update({f"performance.{k}": v for k, v in result.performance.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(report_dir), artifact_path="drift")
        _tag_model_version(cfg, result, str(run.info.run_id))
        return str(run.info.run_id)


def _tag_model_version(cfg: Config, result: DriftResult, run_id: str) -> None:
    """Put the latest drift status on the registered version too, where the registry UI shows it."""
    if not result.model_version:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from training.registry import registered_name

    client = MlflowClient(tracking_uri=cfg.mlflow_uri, registry_uri=cfg.mlflow_uri)
    name = registered_name(result.model)
    try:
        for key, value in {
            "rebuy.drift_status": result.status.level,
            "rebuy.drift_as_of": result.as_of.isoformat(),
            "rebuy.drift_run": run_id,
        }.items():
            client.set_model_version_tag(name, result.model_version, key, value)
    except (
        MlflowException
    ):  # a version that is not in this registry (e.g. monitored from files): run tags suffice
        return


# --- stage: where reference and current come from ---------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """One monitored model: its frames, roles and version, as the adapters found them."""

    model: str
    reference: pd.DataFrame
    current: pd.DataFrame
    roles: Roles
    version: str | None = None
    reference_name: str = "reference"
    current_name: str = "current"
    labelled: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()


SourceLoader = Callable[[Config, str, pd.Timestamp], ModelSource]


def run_drift(
    cfg: Config,
    as_of: pd.Timestamp,
    models: Sequence[str],
    *,
    load_source: SourceLoader,
    log_mlflow: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """`rebuy drift`: analyse, report, log and index every model; one row per model with its status line.

    A model without a champion yet gets status "unmonitored" (a normal state: e.g. no offer model has
    passed its promotion gate); one whose sources cannot be loaded otherwise (no reference logged) gets
    "error". Both carry the reason, and the others are still analysed. Bad data in a source raises (DataError).

    `load_source` is the adapter that finds a model's reference and current rows: in production
    `pipelines.drift_sources.load_model_source` (the MLflow champion's logged reference and the serving
    prediction log), passed by the caller so this module never imports its adapters; tests pass their own.
    """
    from rich.progress import Progress

    drift_dir = cfg.paths.reports_dir / "drift"
    rows = []
    unmonitored: dict[str, str] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("drift reports", total=len(models))
        for model in models:
            bar.update(task, description=f"drift: {model}")
            try:
                src = load_source(cfg, model, as_of)
            except RebuyError as exc:  # e.g. no champion yet: say so and monitor the others
                unmonitored[model] = str(exc)
                rows.append(
                    {
                        "model": model,
                        "status": "unmonitored" if isinstance(exc, NoChampionError) else "error",
                        "line": f"{model}: not monitored — {exc}",
                        "report": None,
                        "mlflow_run": None,
                    }
                )
                bar.advance(task)
                continue
            result = analyse(
                model,
                src.reference,
                src.current,
                src.roles,
                cfg.drift,
                as_of,
                reference_name=src.reference_name,
                current_name=src.current_name,
                model_version=src.version,
                labelled=src.labelled,
            )
            result.notes[:0] = list(src.notes)
            snapshot = evidently_report(result, cfg.drift)
            out = write_report(result, snapshot, drift_dir, evidently_performance_report(result))
            run_id = log_to_mlflow(cfg, result, out) if log_mlflow else None
            rows.append(
                {
                    "model": model,
                    "status": result.status.level,
                    "line": result.status.line(model),
                    "report": str(out / "report.html"),
                    "mlflow_run": run_id,
                }
            )
            bar.advance(task)
    write_index(drift_dir, as_of, unmonitored)
    return pd.DataFrame(rows)


# --- retraining ------------------------------------------------------------------------------------


def retrain_decisions(
    summaries: Sequence[Mapping[str, Any]], models: Sequence[str], *, if_drift: bool
) -> pd.DataFrame:
    """Which models to retrain and why, from each one's latest drift summary. Pure.

    With `if_drift`, only a latest status of drift retrains; a model without any report is not
    retrained (nothing says it drifted). Without it, every requested model retrains.
    """
    latest = latest_by_model(summaries)
    rows = []
    for model in models:
        s = latest.get(model)
        if s is None:
            rows.append(
                {
                    "model": model,
                    "status": None,
                    "retrain": not if_drift,
                    "reasons": ["no drift report yet" + ("" if if_drift else "; retrain forced")],
                }
            )
            continue
        retrain = (s["status"] == "drift") or not if_drift
        why = (
            list(s["reasons"][:5])
            if s["status"] == "drift"
            else [f"latest status {s['status']} (as of {s['as_of']})"]
        )
        if retrain and s["status"] != "drift":
            why.append("retrain forced (no --if-drift)")
        rows.append(
            {"model": model, "status": s["status"], "as_of": s["as_of"], "retrain": retrain, "reasons": why}
        )
    return pd.DataFrame(rows)


Trainer = Callable[[Config, str, pd.Timestamp], Mapping[str, Any]]


def run_retrain(
    cfg: Config,
    as_of: pd.Timestamp,
    models: Sequence[str],
    *,
    if_drift: bool = True,
    train: Trainer,
    log_mlflow: bool = True,
) -> pd.DataFrame:
    """`rebuy retrain`: train (and gate) the drifted models; record the decision per model.

    `train(cfg, model, as_of)` returns what the training pipeline reports (e.g. promoted, metrics); in
    production `pipelines.drift_sources.train_model` (training pipeline + champion gate), passed by the caller.
    Decisions go to reports_dir/drift/retrain/<as-of>.json and, when logged, to an MLflow run tagged
    with each model's decision and the gate's outcome.
    """
    drift_dir = cfg.paths.reports_dir / "drift"
    decisions = retrain_decisions(read_summaries(drift_dir), models, if_drift=if_drift)
    outcomes = []
    for row in decisions.itertuples():
        outcome: Mapping[str, Any] = {}
        if row.retrain:
            try:
                outcome = train(cfg, str(row.model), as_of)
            except RebuyError as exc:  # recorded, and the other models still get their turn
                outcome = {"trained": False, "error": str(exc)}
        outcomes.append(dict(outcome))
    decisions["outcome"] = pd.Series(outcomes, index=decisions.index, dtype=object)
    record = {
        "as_of": as_of.isoformat(),
        "if_drift": if_drift,
        "decisions": decisions.to_dict(orient="records"),
    }
    out = drift_dir / "retrain" / f"{stamp(as_of)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".retrain.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, default=str)
    os.replace(tmp, out)
    if log_mlflow:
        import mlflow

        from training.registry import experiment_id

        mlflow.set_tracking_uri(cfg.mlflow_uri)
        mlflow.set_experiment(experiment_id=experiment_id(cfg, DRIFT_EXPERIMENT))
        with mlflow.start_run(run_name=f"retrain-{stamp(as_of)}"):
            for r, outcome in zip(decisions.itertuples(), outcomes, strict=True):
                verdict = "skipped" if not r.retrain else "failed" if "error" in outcome else "retrained"
                mlflow.set_tag(f"rebuy.retrain.{r.model}", verdict)
                if "promoted" in outcome:
                    mlflow.set_tag(f"rebuy.retrain.{r.model}.promoted", str(outcome["promoted"]))
            mlflow.set_tag("rebuy.retrain.if_drift", str(if_drift))
            mlflow.log_artifact(str(out), artifact_path="retrain")
    return decisions


__all__ = [
    "DriftResult",
    "ModelSource",
    "Roles",
    "age_matched",
    "aged_tenure",
    "analyse",
    "evidently_performance_report",
    "evidently_report",
    "log_to_mlflow",
    "mature_labels",
    "performance",
    "performance_vs_champion",
    "read_summaries",
    "recent_reference",
    "render_index",
    "retrain_decisions",
    "run_drift",
    "run_retrain",
    "sample_matched",
    "write_index",
    "write_report",
]
