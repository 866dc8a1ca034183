"""Per-column drift effect sizes, their noise floor, and the one-line status of a model.

Pure numpy/pandas: DataFrames in, DataFrames out. The same `column_effect` is registered as an
Evidently stat test (see `pipelines.drift`), so the number a reviewer sees in the HTML report is
the number the status was decided on.

Why effect sizes and not p-values: with thousands of rows any test (KS, chi², …) rejects for
shifts nobody cares about, and with a few hundred it misses real ones. An effect size measures
*how much* a distribution moved in units of its own spread, so the threshold means the same thing
at every sample size. Sampling noise still matters at small n, so a column is only flagged when
its effect is also above a permutation noise floor (see `noise_floor`).

Numerical columns — "hurdle" normed Wasserstein:
  * Retention features are mostly zero-inflated and right-skewed (spend in 30 days, views in 1 h).
    A +20 % change of order values moves only the non-zero part, and a plain Wasserstein distance
    normed by the whole column's std dilutes it by the zero share. So a column with a point mass
    at zero is split: the zero share is compared with Cohen's h (2·asin√p difference, the standard
    effect size for proportions), the non-zero parts with the normed Wasserstein distance, and the
    effect is the larger of the two.
  * Heavy-tailed columns (reference skewness > 1) are compared on a signed log1p scale: a
    multiplicative shift (prices, rates) becomes a location shift, and one extreme customer can
    no longer dominate both the distance and its normaliser.
  * Normed Wasserstein = W1(reference, current) / std(reference): for a normal location shift of
    d standard deviations it equals d, i.e. it is on Cohen's d scale (0.1 ≈ "small").
Categorical columns — Cohen's w = sqrt(Σ (p_cur − p_ref)² / p_ref) over the reference's
categories plus one "unseen" bucket: on the same scale as h for two categories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Level = Literal["ok", "warning", "drift"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "drift")
_LEVEL_RANK = {level: i for i, level in enumerate(LEVELS)}

# below this share of exact zeros a column is treated as continuous (no hurdle split)
ZERO_MASS = 0.05
# fewer non-zero rows than this on either side: the non-zero part is too small to compare
MIN_PART_ROWS = 30


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _skewness(x: np.ndarray) -> float:
    sd = x.std()
    if sd == 0 or len(x) < 3:
        return 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3))


def _wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two samples from their sorted values (scipy's result, without its overhead)."""
    allv = np.concatenate([a, b])
    allv.sort(kind="mergesort")
    deltas = np.diff(allv)
    cdf_a = np.searchsorted(a, allv[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, allv[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def _normed_w(ref: np.ndarray, cur: np.ndarray) -> float:
    if len(ref) < MIN_PART_ROWS or len(cur) < MIN_PART_ROWS:
        return 0.0
    norm = ref.std()
    if norm == 0:
        norm = np.concatenate([ref, cur]).std()
        if norm == 0:
            return 0.0
    return _wasserstein_sorted(np.sort(ref), np.sort(cur)) / float(norm)


def cohen_h(p_ref: float, p_cur: float) -> float:
    return float(abs(2 * np.arcsin(np.sqrt(p_cur)) - 2 * np.arcsin(np.sqrt(p_ref))))


def use_log_scale(reference: np.ndarray) -> bool:
    """Decided from the reference alone so both sides always get the same transform."""
    finite = reference[np.isfinite(reference)]
    nonzero = finite[finite != 0]
    return len(nonzero) >= MIN_PART_ROWS and abs(_skewness(nonzero)) > 1.0


def numeric_effect(reference: np.ndarray, current: np.ndarray, *, log_scale: bool | None = None) -> float:
    """Hurdle normed-Wasserstein effect size (see module docstring); NaN when a side is empty."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    if log_scale is None:
        log_scale = use_log_scale(ref)
    if log_scale:
        ref, cur = _slog(ref), _slog(cur)
    p_ref, p_cur = float(np.mean(ref == 0)), float(np.mean(cur == 0))
    if max(p_ref, p_cur) < ZERO_MASS:
        return _normed_w(ref, cur)
    return max(cohen_h(p_ref, p_cur), _normed_w(ref[ref != 0], cur[cur != 0]))


def categorical_effect(reference: pd.Series, current: pd.Series) -> float:
    """Cohen's w over the reference's categories plus an 'unseen' bucket; NaN when a side is empty."""
    ref = pd.Series(reference).dropna().astype(str)
    cur = pd.Series(current).dropna().astype(str)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    p_ref = ref.value_counts(normalize=True)
    p_cur = cur.value_counts(normalize=True)
    cats = p_ref.index.union(p_cur.index)
    pr = p_ref.reindex(cats, fill_value=0.0).to_numpy()
    pc = p_cur.reindex(cats, fill_value=0.0).to_numpy()
    # a category the reference never saw gets a floor of half an observation so w stays finite
    pr = np.maximum(pr, 0.5 / len(ref))
    return float(np.sqrt(np.sum((pc - pr) ** 2 / pr)))


def column_effect(reference: pd.Series, current: pd.Series, categorical: bool) -> float:
    if categorical:
        return categorical_effect(reference, current)
    return numeric_effect(reference.to_numpy(dtype=float), current.to_numpy(dtype=float))


def noise_floor(
    reference: pd.Series, current: pd.Series, categorical: bool, *, permutations: int, z: float, seed: int
) -> float:
    """Effect that sampling noise alone reaches at these sample sizes: mean + z·sd over label permutations.

    Pooling both sides and re-splitting them at random keeps n_ref and n_cur, so the floor is high
    for small samples and vanishes for large ones; the effect thresholds then carry the meaning.
    """
    ref = reference.dropna()
    cur = current.dropna()
    if len(ref) == 0 or len(cur) == 0 or permutations <= 0:
        return 0.0
    pooled = pd.concat([ref, cur], ignore_index=True)
    if not categorical:
        values = pooled.to_numpy(dtype=float)
        log_scale = use_log_scale(ref.to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    n_ref = len(ref)
    scores = np.empty(permutations)
    for i in range(permutations):
        idx = rng.permutation(len(pooled))
        if categorical:
            scores[i] = categorical_effect(pooled.iloc[idx[:n_ref]], pooled.iloc[idx[n_ref:]])
        else:
            scores[i] = numeric_effect(values[idx[:n_ref]], values[idx[n_ref:]], log_scale=log_scale)
    return float(np.nanmean(scores) + z * np.nanstd(scores, ddof=1))


@dataclass(frozen=True)
class Thresholds:
    """Effect sizes at which a column is a warning / drift, and how the noise floor is estimated."""

    warning_effect: float = 0.1
    drift_effect: float = 0.2
    permutations: int = 30
    # z for the noise floor; 3.5 keeps the per-column false-flag rate near 1e-3, i.e. a few % per model
    noise_z: float = 3.5
    missing_delta: float = 0.05
    seed: int = 7


def column_level(effect: float, floor: float, th: Thresholds) -> Level:
    if not np.isfinite(effect) or effect <= floor:
        return "ok"
    if effect >= th.drift_effect:
        return "drift"
    if effect >= th.warning_effect:
        return "warning"
    return "ok"


def column_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    categorical: Iterable[str],
    th: Thresholds,
    roles: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per column: effect, noise floor, level, missing shares and means; sorted by effect.

    `roles` maps a column to what it is (feature / prediction / target); default feature.
    """
    cats = set(categorical)
    roles = roles or {}
    rows = []
    for i, col in enumerate(columns):
        is_cat = col in cats
        ref, cur = reference[col], current[col]
        effect = column_effect(ref.dropna(), cur.dropna(), is_cat)
        floor = noise_floor(ref, cur, is_cat, permutations=th.permutations, z=th.noise_z, seed=th.seed + i)
        effect_level = column_level(effect, floor, th)
        ref_missing, cur_missing = float(ref.isna().mean()), float(cur.isna().mean())
        missing_jump = cur_missing - ref_missing >= th.missing_delta
        level = worst([effect_level, "warning" if missing_jump else "ok"])
        rows.append(
            {
                "column": col,
                "role": roles.get(col, "feature"),
                "kind": "categorical" if is_cat else "numerical",
                "method": "cohen_w" if is_cat else ("hurdle_wasserstein_log" if use_log_scale(
                    ref.dropna().to_numpy(dtype=float)) else "hurdle_wasserstein"),
                "effect": effect,
                "noise_floor": floor,
                "level": level,
                "effect_level": effect_level,
                "missing_jump": missing_jump,
                "ref_missing": ref_missing,
                "cur_missing": cur_missing,
                "ref_mean": np.nan if is_cat else float(ref.mean()),
                "cur_mean": np.nan if is_cat else float(cur.mean()),
                "ref_rows": int(ref.notna().sum()),
                "cur_rows": int(cur.notna().sum()),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values("effect", ascending=False, na_position="last", ignore_index=True)


@dataclass(frozen=True)
class Status:
    """A model's one-line verdict and the reasons behind it, worst first."""

    level: Level
    reasons: list[str] = field(default_factory=list)

    def line(self, model: str) -> str:
        head = self.reasons[0] if self.reasons else "no column moved beyond its thresholds"
        return f"{model}: {self.level} — {head}"


def worst(levels: Iterable[Level]) -> Level:
    return max(levels, key=_LEVEL_RANK.__getitem__, default="ok")


def model_status(
    table: pd.DataFrame,
    *,
    warning_share: float,
    drift_share: float,
    performance: dict[str, float] | None = None,
    performance_level: Level = "ok",
) -> Status:
    """Worst of: any single column's level, the share of flagged features, and matured performance.

    One strongly moved column is enough for drift (a +20 % price change touches only the spend
    columns, which may be 10 % of all features); many mildly moved columns add up via the shares.
    """
    reasons: list[tuple[Level, str]] = []
    for r in table.itertuples():
        if r.level != "ok":
            what = f"{r.role} {r.column}"
            if r.missing_jump:
                reasons.append(("warning", f"{what}: missing share {r.ref_missing:.0%} → {r.cur_missing:.0%}"))
            if r.effect_level != "ok":
                reasons.append((r.effect_level, f"{what}: effect {r.effect:.3f} ({r.method}, noise floor "
                                                f"{r.noise_floor:.3f})"))
    features = table[table["role"] == "feature"] if not table.empty else table
    if len(features):
        flagged = float((features["level"] != "ok").mean())
        if flagged >= drift_share:
            reasons.append(("drift", f"{flagged:.0%} of features flagged (drift share {drift_share:.0%})"))
        elif flagged >= warning_share:
            reasons.append(("warning", f"{flagged:.0%} of features flagged (warning share {warning_share:.0%})"))
    if performance_level != "ok" and performance:
        detail = ", ".join(f"{k} {v:.3f}" for k, v in performance.items())
        reasons.append((performance_level, f"performance on matured labels: {detail}"))
    reasons.sort(key=lambda lr: -_LEVEL_RANK[lr[0]])
    return Status(level=worst(level for level, _ in reasons), reasons=[f"[{lv}] {text}" for lv, text in reasons])


__all__ = [
    "LEVELS",
    "Level",
    "Status",
    "Thresholds",
    "categorical_effect",
    "cohen_h",
    "column_effect",
    "column_level",
    "column_table",
    "model_status",
    "noise_floor",
    "numeric_effect",
    "use_log_scale",
    "worst",
]
