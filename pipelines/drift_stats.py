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
  * Normed Wasserstein = W1(reference, current) / pooled std: for a normal location shift of d
    standard deviations it equals d, i.e. it is on Cohen's d scale (0.1 ≈ "small"). The pooled std
    (not the reference's alone, as Evidently's own test uses) keeps near-constant parts such as
    "1 cart in 24 h" from exploding the ratio. A non-zero part with fewer than MIN_PART_ROWS rows
    on either side is not compared: at that size its distance is mostly noise.
Categorical columns — Cohen's w = sqrt(Σ (p_cur − p_ref)² / p_ref) over the reference's
categories plus one "unseen" bucket: on the same scale as h for two categories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import pandas as pd

Level = Literal["ok", "warning", "drift"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "drift")
_LEVEL_RANK = {level: i for i, level in enumerate(LEVELS)}

# below this share of exact zeros a column is treated as continuous (no hurdle split)
ZERO_MASS = 0.05
# fewer non-zero rows than this on either side: the non-zero part is too small to compare
MIN_PART_ROWS = 100
# a non-zero part below this share of rows (e.g. "carts in the last 24 h") is a rare event: only its
# share is compared — how a handful of customers' counts moved is neither measurable nor a population shift
MIN_PART_SHARE = 0.1


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
    """W1 in units of the pooled std (stable when one side is nearly constant, e.g. counts of 1)."""
    if len(ref) < MIN_PART_ROWS or len(cur) < MIN_PART_ROWS:
        return 0.0
    norm = float(np.sqrt((ref.var() * len(ref) + cur.var() * len(cur)) / (len(ref) + len(cur))))
    if norm == 0:
        return 0.0 if ref[0] == cur[0] else float("inf")
    return _wasserstein_sorted(np.sort(ref), np.sort(cur)) / norm


def cohen_h(p_ref: float, p_cur: float) -> float:
    return float(abs(2 * np.arcsin(np.sqrt(p_cur)) - 2 * np.arcsin(np.sqrt(p_ref))))


def use_log_scale(reference: np.ndarray) -> bool:
    """Decided from the reference alone so both sides always get the same transform."""
    finite = reference[np.isfinite(reference)]
    nonzero = finite[finite != 0]
    return len(nonzero) >= MIN_PART_ROWS and abs(_skewness(nonzero)) > 1.0


def _parts(
    ref: np.ndarray, cur: np.ndarray, log_scale: bool | None
) -> tuple[float | None, np.ndarray, np.ndarray]:
    """(Cohen's h of the zero shares or None when there is no point mass, reference part, current part)."""
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    if log_scale is None:
        log_scale = use_log_scale(ref)
    if log_scale:
        ref, cur = _slog(ref), _slog(cur)
    p_ref, p_cur = float(np.mean(ref == 0)), float(np.mean(cur == 0))
    if max(p_ref, p_cur) < ZERO_MASS:
        return None, ref, cur
    if min(1 - p_ref, 1 - p_cur) < MIN_PART_SHARE:
        return cohen_h(p_ref, p_cur), ref[:0], cur[:0]
    return cohen_h(p_ref, p_cur), ref[ref != 0], cur[cur != 0]


def numeric_effect(reference: np.ndarray, current: np.ndarray, *, log_scale: bool | None = None) -> float:
    """Hurdle normed-Wasserstein effect size (see module docstring); NaN when a side is empty."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if not np.isfinite(ref).any() or not np.isfinite(cur).any():
        return float("nan")
    h, ref_part, cur_part = _parts(ref, cur, log_scale)
    w = _normed_w(ref_part, cur_part)
    return w if h is None else max(h, w)


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


@dataclass(frozen=True)
class Thresholds:
    """Effect sizes at which a column is a warning / drift, and how the noise floor is estimated."""

    warning_effect: float = 0.1
    drift_effect: float = 0.2
    permutations: int = 30
    # z of the noise floor (see DriftConfig.noise_z for why it is well above normal-theory values)
    noise_z: float = 4.5
    missing_delta: float = 0.05
    seed: int = 7


@dataclass(frozen=True)
class Assessment:
    """One column: its effect, the noise floor of the component that gave it, and its level."""

    effect: float
    floor: float
    level: Level
    component: str


def _level(effect: float, floor: float, th: Thresholds) -> Level:
    if not np.isfinite(effect) or effect <= floor:
        return "ok"
    if effect >= th.drift_effect:
        return "drift"
    if effect >= th.warning_effect:
        return "warning"
    return "ok"


def _w_floor(ref: np.ndarray, cur: np.ndarray, th: Thresholds, seed: int) -> float:
    """Permutation floor of the normed Wasserstein distance at these part sizes: mean + z·sd.

    The pooled part is re-split with the sizes fixed, so the null has no jumps from parts
    crossing MIN_PART_ROWS, and discrete values (counts) are handled as they are.
    """
    if len(ref) < MIN_PART_ROWS or len(cur) < MIN_PART_ROWS or th.permutations <= 1:
        return 0.0
    pooled = np.concatenate([ref, cur])
    rng = np.random.default_rng(seed)
    scores = np.empty(th.permutations)
    for i in range(th.permutations):
        idx = rng.permutation(len(pooled))
        scores[i] = _normed_w(pooled[idx[: len(ref)]], pooled[idx[len(ref) :]])
    return float(scores.mean() + th.noise_z * scores.std(ddof=1))


def assess(
    reference: pd.Series, current: pd.Series, categorical: bool, th: Thresholds, *, seed: int = 0
) -> Assessment:
    """Effect size and level of one column; each component is judged against its own noise floor.

    Zero share (Cohen's h) and categories (Cohen's w) have analytic nulls: h ~ N(0, 1/n_r + 1/n_c)
    and w² / (1/n_r + 1/n_c) ~ χ²(k − 1); the value part uses permutations.
    """
    from scipy import stats

    ref, cur = reference.dropna(), current.dropna()
    if len(ref) == 0 or len(cur) == 0:
        return Assessment(float("nan"), 0.0, "ok", "empty")
    inv_n = 1 / len(ref) + 1 / len(cur)
    if categorical:
        w = categorical_effect(ref, cur)
        k = max(2, len(set(ref.astype(str)) | set(cur.astype(str))))
        floor = float(np.sqrt(stats.chi2.isf(stats.norm.sf(th.noise_z), k - 1) * inv_n))
        return Assessment(w, floor, _level(w, floor, th), "categories")
    h, ref_part, cur_part = _parts(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float), None)
    w = _normed_w(ref_part, cur_part)
    w_floor = _w_floor(ref_part, cur_part, th, seed)
    judged = [Assessment(w, w_floor, _level(w, w_floor, th), "values" if h is None else "non-zero values")]
    if h is not None:
        h_floor = th.noise_z * float(np.sqrt(inv_n))
        judged.append(Assessment(h, h_floor, _level(h, h_floor, th), "zero share"))
    return max(judged, key=lambda a: (_LEVEL_RANK[a.level], a.effect))


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
        a = assess(ref, cur, is_cat, th, seed=th.seed + i)
        effect, floor, effect_level = a.effect, a.floor, a.level
        ref_missing, cur_missing = float(ref.isna().mean()), float(cur.isna().mean())
        missing_jump = cur_missing - ref_missing >= th.missing_delta
        level = worst([effect_level, "warning" if missing_jump else "ok"])
        rows.append(
            {
                "column": col,
                "role": roles.get(col, "feature"),
                "kind": "categorical" if is_cat else "numerical",
                "method": "cohen_w"
                if is_cat
                else (
                    "hurdle_wasserstein_log"
                    if use_log_scale(ref.dropna().to_numpy(dtype=float))
                    else "hurdle_wasserstein"
                ),
                "component": a.component,
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
                reasons.append(
                    ("warning", f"{what}: missing share {r.ref_missing:.0%} → {r.cur_missing:.0%}")
                )
            effect_level = cast(Level, r.effect_level)
            if effect_level != "ok":
                reasons.append(
                    (
                        effect_level,
                        f"{what}: effect {r.effect:.3f} on {r.component} ({r.method}, "
                        f"noise floor {r.noise_floor:.3f})",
                    )
                )
    features = table[table["role"] == "feature"] if not table.empty else table
    if len(features):
        flagged = float((features["level"] != "ok").mean())
        if flagged >= drift_share:
            reasons.append(("drift", f"{flagged:.0%} of features flagged (drift share {drift_share:.0%})"))
        elif flagged >= warning_share:
            reasons.append(
                ("warning", f"{flagged:.0%} of features flagged (warning share {warning_share:.0%})")
            )
    if performance_level != "ok" and performance:
        detail = ", ".join(f"{k} {v:.3f}" for k, v in performance.items())
        reasons.append((performance_level, f"performance on matured labels: {detail}"))
    reasons.sort(key=lambda lr: -_LEVEL_RANK[lr[0]])
    return Status(
        level=worst(level for level, _ in reasons), reasons=[f"[{lv}] {text}" for lv, text in reasons]
    )


__all__ = [
    "LEVELS",
    "Assessment",
    "Level",
    "Status",
    "Thresholds",
    "assess",
    "categorical_effect",
    "cohen_h",
    "column_effect",
    "column_table",
    "model_status",
    "numeric_effect",
    "use_log_scale",
    "worst",
]
