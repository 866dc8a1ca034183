"""Batch predictions of a LightGBM booster as a few table look-ups per group of trees, for `rebuy score`.

Why: on a batch, `Booster.predict` walks every tree for every row (~30 ns per tree and row here), and the
models' trees are small (7-63 leaves over a few features each), so walking them is most of `rebuy score`'s
model part. A tree's output depends on each feature only through which side of the tree's thresholds it
falls, so it is a function of a few small integers; so is the sum of a run of consecutive trees, as long as
the product of those integers' ranges stays small. `TreeTables` cuts the booster's trees into such runs and
tabulates each run's summed raw score once, by asking LightGBM itself for it (`predict(start_iteration=..,
num_iteration=.., raw_score=True)` on one representative row per table cell), so the table holds LightGBM's
own numbers. Scoring a batch is then: per feature, which cell each value falls in (`np.searchsorted`, once),
and per run, a few integer gathers and one table gather. Runs whose single tree would need too big a table
stay with LightGBM (`predict` over that range of trees).

The cell a value falls in reproduces LightGBM's numerical decision exactly: values within 1e-35f of zero
count as zero (LightGBM drops them when it reads a dense row), NaN is its own cell, and each node's
missing-value rule (none / zero / NaN, default left or right) decides the cells where it applies. The only
difference from `Booster.predict` is summation order (run by run instead of tree by tree): about 1e-15
relative, checked in tests/serving/test_treetables.py. Categorical splits, linear trees, multiclass models
and objectives without a known output transform are not tabulated (`TreeTables.build` returns None and the
caller keeps `Booster.predict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

# LightGBM's kZeroThreshold: the C++ constant is the float literal 1e-35f, compared in double
ZERO = float(np.float32(1e-35))
# LightGBM writes thresholds through AvoidInf: +-inf (a split "every number left, NaN right") reads 1e300 in
# the dump, and a model reloaded from text compares against 1e300 itself. Such thresholds are taken as +-inf
# and rows holding a value this large (or inf) are left to LightGBM, so either reading gives its own answer.
HUGE = 1e300
# cells per table: 2**16 float64 values (512 KiB) keep a run's table in cache; bigger tables build slower
TABLE_BUDGET = 1 << 16
_IDENTITY = frozenset({"regression", "regression_l1", "huber", "fair", "quantile", "mape"})
_SIGMOID = frozenset({"binary", "cross_entropy"})
_EXP = frozenset({"poisson", "gamma", "tweedie"})


@dataclass(frozen=True)
class _Table:
    """One run of trees: its summed raw score per combination of the features' local cells."""

    features: tuple[int, ...]
    maps: tuple[np.ndarray, ...]  # per feature: global cell -> local cell x stride (intp)
    values: np.ndarray


@dataclass(frozen=True)
class _Trees:
    """A run of trees too large to tabulate: LightGBM predicts them itself."""

    start: int
    count: int


def _split_nodes(tree: dict[str, Any], out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            out.append(node)
            stack += [node["left_child"], node["right_child"]]
    return out


def _linear_leaves(tree: dict[str, Any]) -> bool:
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            stack += [node["left_child"], node["right_child"]]
        elif "leaf_coeff" in node:
            return True
    return False


def _goes_left(reps: np.ndarray, node: dict[str, Any]) -> np.ndarray:
    """LightGBM's Tree::NumericalDecision for every representative value of one feature."""
    missing = node["missing_type"]
    v = np.where(np.isnan(reps), np.nan if missing == "NaN" else 0.0, reps)
    t = float(node["threshold"])
    t = np.inf if t >= HUGE else -np.inf if t <= -HUGE else t
    with np.errstate(invalid="ignore"):
        plain = v <= t
    if missing == "Zero":
        return np.where(np.abs(v) <= ZERO, bool(node["default_left"]), plain)
    if missing == "NaN":
        return np.where(np.isnan(v), bool(node["default_left"]), plain)
    return plain


def _output_transform(objective: str) -> tuple[str, float] | None:
    """('identity' | 'sigmoid' | 'exp', sigmoid scale) of LightGBM's ConvertOutput, or None if unknown."""
    tokens = objective.split()
    if not tokens or "sqrt" in tokens[1:]:
        return None
    name = tokens[0]
    if name in _IDENTITY:
        return "identity", 1.0
    if name in _EXP:
        return "exp", 1.0
    if name in _SIGMOID:
        params = dict(t.split(":", 1) for t in tokens[1:] if ":" in t)
        return "sigmoid", float(params.get("sigmoid", 1.0))
    return None


def _dense(codes: np.ndarray) -> np.ndarray:
    """Integer codes -> 0..k-1 in order of value (cells with equal codes merge)."""
    return np.unique(codes, return_inverse=True)[1].astype(np.int64)


@dataclass(frozen=True)
class _Single:
    """One tree: its local cell per global cell of each feature it splits on, and its leaf value per
    combination of local cells (row-major in the order of `labels`)."""

    labels: dict[int, np.ndarray]
    values: np.ndarray


def _tree_table(
    booster: lgb.Booster, t: int, nodes: list[dict[str, Any]], reps: list[np.ndarray], budget: int
) -> _Single | None:
    """Tree t as a table, its values from LightGBM (one representative row per cell); None if too big."""
    by_feature: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:
        by_feature.setdefault(int(node["split_feature"]), []).append(node)
    labels: dict[int, np.ndarray] = {}
    for f, fnodes in sorted(by_feature.items()):
        code = np.zeros(len(reps[f]), dtype=np.int64)
        for node in fnodes:  # cells that go the same way at every node of f are one local cell
            code = _dense(code * 2 + _goes_left(reps[f], node))
        labels[f] = code
    sizes = [int(lab.max()) + 1 for lab in labels.values()]
    total = math.prod(sizes)
    if total > budget:
        return None
    grid = np.full((total, booster.num_feature()), np.nan)
    row = np.arange(total)
    for (f, lab), size, stride in zip(labels.items(), sizes, _strides(sizes), strict=True):
        _, first = np.unique(lab, return_index=True)  # the first global cell of each local cell
        grid[:, f] = reps[f][first][(row // stride) % size]
    values = booster.predict(grid, start_iteration=t, num_iteration=1, raw_score=True, num_threads=1)
    return _Single(labels, np.asarray(values, dtype=np.float64))


def _strides(sizes: list[int]) -> list[int]:
    return [math.prod(sizes[k + 1 :]) for k in range(len(sizes))]


def _combine(trees: list[_Single], labels: dict[int, np.ndarray]) -> _Table:
    """A run of trees as one table over the run's local cells: the trees' values summed in tree order
    (as LightGBM sums them)."""
    feats = tuple(sorted(labels))
    sizes = [int(labels[f].max()) + 1 for f in feats]
    strides = _strides(sizes)
    total = math.prod(sizes)
    row = np.arange(total)
    first = {f: np.unique(labels[f], return_index=True)[1] for f in feats}
    local = {f: (row // st) % size for f, size, st in zip(feats, sizes, strides, strict=True)}
    values = np.zeros(total)
    for tree in trees:
        tsizes = [int(lab.max()) + 1 for lab in tree.labels.values()]
        idx = np.zeros(total, dtype=np.intp)
        for (f, lab), st in zip(tree.labels.items(), _strides(tsizes), strict=True):
            idx += lab[first[f]][local[f]] * st
        values += tree.values[idx]
    maps = tuple((labels[f] * st).astype(np.intp) for f, st in zip(feats, strides, strict=True))
    return _Table(feats, maps, values)


class TreeTables:
    """A booster's trees as look-up tables; `predict` answers like `Booster.predict` on a float64 matrix."""

    def __init__(
        self,
        booster: lgb.Booster,
        bounds: list[np.ndarray],
        parts: list[_Table | _Trees],
        transform: tuple[str, float],
    ) -> None:
        self.booster = booster
        self.bounds = bounds
        self.parts = parts
        self.transform = transform
        self.ncol = len(bounds)
        self.used = sorted({f for p in parts if isinstance(p, _Table) for f in p.features})
        self.search = {f: np.append(bounds[f], np.inf) for f in self.used}

    @classmethod
    def build(cls, booster: lgb.Booster, budget: int = TABLE_BUDGET) -> TreeTables | None:
        """Tabulate `booster` (the iterations `Booster.predict` uses by default); None when unsupported."""
        if booster.num_model_per_iteration() != 1:
            return None
        dump = booster.dump_model()
        transform = _output_transform(str(dump.get("objective", "")))
        if transform is None:
            return None
        n_iter = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        infos = dump["tree_info"][:n_iter]
        if any(_linear_leaves(t["tree_structure"]) for t in infos):
            return None  # linear trees: a leaf's output depends on the values, not only on the cell
        trees = [_split_nodes(t["tree_structure"], []) for t in infos]
        ncol = int(booster.num_feature())
        thresholds: list[set[float]] = [set() for _ in range(ncol)]
        for nodes in trees:
            for node in nodes:
                if node.get("decision_type") != "<=":
                    return None  # categorical split
                if abs(float(node["threshold"])) < HUGE:
                    thresholds[int(node["split_feature"])].add(float(node["threshold"]))
        bounds: list[np.ndarray] = []
        reps: list[np.ndarray] = []
        for f in range(ncol):
            b = np.array(sorted(thresholds[f] | {float(np.nextafter(-ZERO, -np.inf)), ZERO}))
            bounds.append(b)
            # one value inside each cell (-inf, b0], (b0, b1], ..., (b_last, inf], NaN; tiny values read as 0
            r = np.concatenate([b, [np.nextafter(b[-1], np.inf), np.nan]])
            reps.append(np.where(np.abs(r) <= ZERO, 0.0, r))
        single = [_tree_table(booster, t, nodes, reps, budget) for t, nodes in enumerate(trees)]
        parts: list[_Table | _Trees] = []
        t = 0
        while t < len(trees):
            if single[t] is None:  # this one tree alone needs too big a table: LightGBM walks it
                last = parts[-1] if parts else None
                if isinstance(last, _Trees) and last.start + last.count == t:
                    parts[-1] = _Trees(last.start, last.count + 1)
                else:
                    parts.append(_Trees(t, 1))
                t += 1
                continue
            labels: dict[int, np.ndarray] = {}
            end = t
            while end < len(trees) and single[end] is not None:
                grown = dict(labels)
                for f, lab in single[end].labels.items():  # type: ignore[union-attr]
                    old = grown.get(f)
                    grown[f] = lab if old is None else _dense(old * (int(lab.max()) + 1) + lab)
                if math.prod(int(lab.max()) + 1 for lab in grown.values()) > budget and end > t:
                    break
                labels, end = grown, end + 1
            parts.append(_combine([s for s in single[t:end] if s is not None], labels))
            t = end
        return cls(booster, bounds, parts, transform)

    def cells(self, X: np.ndarray) -> dict[int, np.ndarray]:
        """Per feature the trees split on, the global cell of every row's value.

        `np.searchsorted` over the bounds plus +inf gives (-inf, b0] -> 0, ..., (b_last, inf] -> K and, as
        NaN sorts after everything, NaN -> K + 1. Values within 1e-35 of zero land in the cell
        (nextafter(-1e-35), 1e-35] with 0, as LightGBM reads them.
        """
        cols = np.ascontiguousarray(X[:, self.used].T)
        return {
            f: np.searchsorted(self.search[f], cols[k], side="left").astype(np.intp, copy=False)
            for k, f in enumerate(self.used)
        }

    def raw(self, X: np.ndarray) -> np.ndarray:
        cells = self.cells(X)
        acc = np.zeros(X.shape[0])
        for part in self.parts:
            if isinstance(part, _Trees):
                acc += self.booster.predict(
                    X, start_iteration=part.start, num_iteration=part.count, raw_score=True, num_threads=1
                )
                continue
            if not part.features:
                acc += part.values[0]
                continue
            idx = part.maps[0][cells[part.features[0]]]
            for f, m in zip(part.features[1:], part.maps[1:], strict=True):
                idx += m[cells[f]]
            acc += part.values[idx]
        return acc

    def predict(self, X: np.ndarray, raw_score: bool = False) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.ncol:
            raise ValueError(f"expected a matrix with {self.ncol} columns, got shape {X.shape}")
        X = np.asarray(X, dtype=np.float64)
        raw = self.raw(X)
        kind, scale = self.transform
        if raw_score or kind == "identity":
            out = raw
        elif kind == "exp":
            out = np.exp(raw)
        else:
            out = 1.0 / (1.0 + np.exp(-scale * raw))
        with np.errstate(invalid="ignore"):
            huge = (np.abs(X) >= HUGE).any(axis=1)
        if huge.any():  # see HUGE: LightGBM answers these rows itself
            out[huge] = self.booster.predict(X[huge], raw_score=raw_score, num_threads=1)
        return out

    @property
    def tabulated_share(self) -> float:
        """Share of the trees answered from tables (the rest are LightGBM's own walk)."""
        walked = sum(p.count for p in self.parts if isinstance(p, _Trees))
        total = int(
            self.booster.best_iteration
            if self.booster.best_iteration > 0
            else self.booster.current_iteration()
        )
        return 1.0 - walked / max(total, 1)


__all__ = ["HUGE", "TABLE_BUDGET", "ZERO", "TreeTables"]
