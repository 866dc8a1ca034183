"""Uplift meta-learners over LightGBM: how much each arm changes each outcome, per customer.

The question is not "who will buy" but "whom does which offer make buy": a T-learner fits one outcome
model per arm and subtracts; an X-learner then regresses the imputed individual effects on the features
(once from the treated side, once from the control side) and blends them by the treatment share, which
helps when an arm is small or the effect is simpler than the outcome; an S-learner fits one model with the
arm as a feature, so every arm shares the baseline learned from all rows and a tree splits on the arm only
where the data supports an effect (an implicit shrinkage that wins when effects are small next to the
outcome's noise: benchmarks/offer.py). The candidates are fitted for every (arm vs control, outcome) pair
and the better one on held-out data by Qini is kept (`select_learner`).

Inputs are a feature frame (numeric and categorical columns), the arm each row got, its logging
propensity and one or more outcome columns — the same whether the rows come from rebuy's decision log
or an imported campaign export. Models persist as LightGBM text plus one JSON file; no pickle. Serving
calls `UpliftModel.predict` on a numpy matrix encoded by `Encoder.transform`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from rebuy.errors import DataError, RebuyError
from training.ope import qini

LEARNERS: tuple[str, ...] = ("t", "x")
# every learner `fit_uplift` knows; LEARNERS stays the default comparison of imported campaigns
ALL_LEARNERS: tuple[str, ...] = ("t", "x", "s")

BASE_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "lambda_l2": 10.0,
    "num_threads": 1,
    "verbose": -1,
    "deterministic": True,
}
MAX_ROUNDS = 400
EARLY_STOPPING = 30


# --- feature encoding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoder:
    """Feature frame → float matrix; categories become codes learned at fit time, unseen ones NaN.

    NaN is LightGBM's "missing", so a category that never appeared in training scores like a missing
    value instead of crashing or silently aliasing another category's code.
    """

    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]]

    @classmethod
    def fit(cls, X: pd.DataFrame, categorical: Sequence[str] = ()) -> Encoder:
        cats = set(categorical) | {
            c
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
        }
        numeric = tuple(c for c in X.columns if c not in cats)
        levels = {c: tuple(sorted(X[c].dropna().astype(str).unique())) for c in X.columns if c in cats}
        return cls(numeric, levels)

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.numeric) + len(self.categorical)))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise DataError(
                f"features missing for uplift scoring: {missing}",
                column=missing[0],
                hint="score with the same feature columns the model was trained on",
            )
        out = np.empty((len(X), len(self.feature_names)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            col = pd.to_numeric(X[c], errors="coerce") if not pd.api.types.is_numeric_dtype(X[c]) else X[c]
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        for j, (c, levels) in enumerate(self.categorical.items(), start=len(self.numeric)):
            codes = pd.Categorical(X[c].astype("string").astype(object), categories=list(levels)).codes
            out[:, j] = np.where(codes < 0, np.nan, codes)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Encoder:
        return cls(tuple(d["numeric"]), {k: tuple(v) for k, v in d["categorical"].items()})


# --- the model ---------------------------------------------------------------------------------------


@dataclass
class UpliftModel:
    """Per arm and outcome: the effect against control (`predict`) and the outcome level (`predict_levels`).

    Boosters are keyed "<target>|mu|<arm>" (outcome model of one arm, control included) and, for the
    X-learner, "<target>|tau0|<arm>" / "<target>|tau1|<arm>"; `g[arm]` is the treated share that blends them.
    The S-learner has one booster per target, "<target>|s", whose last column is the arm's code in
    [control, *arms].
    """

    learner: str
    control: str
    arms: list[str]
    targets: list[str]
    binary: dict[str, bool]
    encoder: Encoder
    boosters: dict[str, lgb.Booster]
    g: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.encoder.feature_names

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != len(self.feature_names):
            raise RebuyError(
                f"uplift model expects {len(self.feature_names)} features {self.feature_names}, "
                f"got {X.shape[1]} columns; encode rows with model.encoder.transform"
            )
        return X

    def _p(self, key: str, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.boosters[key].predict(X, num_threads=1), dtype=np.float64)

    def _level(self, target: str, arm: str, X: np.ndarray) -> np.ndarray:
        """Expected outcome of `target` under `arm`: its own model (T, X) or the S-model with the arm set."""
        if self.learner == "s":
            code = [self.control, *self.arms].index(arm)
            return self._p(f"{target}|s", np.column_stack([X, np.full(len(X), float(code))]))
        return self._p(f"{target}|mu|{arm}", X)

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """arm → one array of estimated effects vs control per target, in `targets` order."""
        X = self._check(X)
        out: dict[str, tuple[np.ndarray, ...]] = {}
        diff = self.learner in ("t", "s")
        mu0 = {t: self._level(t, self.control, X) for t in self.targets} if diff else {}
        for arm in self.arms:
            per: list[np.ndarray] = []
            for t in self.targets:
                if diff:
                    per.append(self._level(t, arm, X) - mu0[t])
                else:
                    g = self.g[arm]
                    per.append(g * self._p(f"{t}|tau0|{arm}", X) + (1 - g) * self._p(f"{t}|tau1|{arm}", X))
            out[arm] = tuple(per)
        return out

    def predict_levels(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """arm (control included) → expected outcome per target: the reward model of doubly robust OPE."""
        X = self._check(X)
        return {a: tuple(self._level(t, a, X) for t in self.targets) for a in [self.control, *self.arms]}

    def effects_frame(self, X: np.ndarray, target: str) -> pd.DataFrame:
        """(rows × arms) frame of one target's effects: the input of `policy.greedy_batch`."""
        i = self.targets.index(target)
        return pd.DataFrame({a: v[i] for a, v in self.predict(X).items()})

    def levels_matrix(self, X: np.ndarray, target: str, actions: Sequence[str]) -> np.ndarray:
        """(rows × actions) expected outcome of `target` under each action."""
        i = self.targets.index(target)
        lv = self.predict_levels(X)
        return np.column_stack([lv[a][i] for a in actions])

    # persistence: one JSON + LightGBM text per booster
    def save(self, path: Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {}
        for i, (key, b) in enumerate(sorted(self.boosters.items())):
            name = f"booster_{i:03d}.txt"
            b.save_model(str(path / name))
            files[key] = name
        doc = {
            "format": "rebuy-uplift-v1",
            "learner": self.learner,
            "control": self.control,
            "arms": self.arms,
            "targets": self.targets,
            "binary": self.binary,
            "encoder": self.encoder.to_json(),
            "g": self.g,
            "boosters": files,
            "meta": self.meta,
        }
        (path / "uplift.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> UpliftModel:
        path = Path(path)
        meta_file = path / "uplift.json"
        if not meta_file.is_file():
            raise RebuyError(f"{path}: no uplift.json; not an uplift model directory")
        doc = json.loads(meta_file.read_text(encoding="utf-8"))
        if doc.get("format") != "rebuy-uplift-v1":
            raise RebuyError(f"{meta_file}: unknown format {doc.get('format')!r}")
        boosters = {k: lgb.Booster(model_file=str(path / f)) for k, f in doc["boosters"].items()}
        return cls(
            doc["learner"],
            doc["control"],
            list(doc["arms"]),
            list(doc["targets"]),
            dict(doc["binary"]),
            Encoder.from_json(doc["encoder"]),
            boosters,
            dict(doc["g"]),
            dict(doc.get("meta", {})),
        )


# --- fitting -------------------------------------------------------------------------------------------


def _is_binary(y: np.ndarray) -> bool:
    v = np.unique(y[np.isfinite(y)])
    return len(v) <= 2 and set(v.tolist()) <= {0.0, 1.0}


def _fit_one(
    X: np.ndarray,
    y: np.ndarray,
    binary: bool,
    cat_idx: list[int],
    seed: int,
    params: Mapping[str, Any] | None,
) -> lgb.Booster:
    """One base learner, with early stopping on a random fifth of its own rows (deterministic by seed)."""
    p = {**BASE_PARAMS, **(params or {}), "seed": seed, "objective": "binary" if binary else "regression"}
    if binary:
        p["metric"] = "binary_logloss"
    p["min_data_in_leaf"] = int(min(p["min_data_in_leaf"], max(5, len(y) // 20)))
    rng = np.random.default_rng(seed)
    valid = rng.random(len(y)) < 0.2
    if valid.sum() < 20 or (~valid).sum() < 20:
        valid = np.zeros(len(y), dtype=bool)
    kw: dict[str, Any] = {"categorical_feature": cat_idx, "free_raw_data": False}
    dtrain = lgb.Dataset(X[~valid], y[~valid], params={"verbose": -1}, **kw)
    if valid.any():
        dvalid = lgb.Dataset(X[valid], y[valid], reference=dtrain, **kw)
        b = lgb.train(
            p,
            dtrain,
            MAX_ROUNDS,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
        )
        # refit on every row with the chosen number of rounds: small arms need all their data
        rounds = max(b.best_iteration, 1)
    else:
        rounds = 100
    dall = lgb.Dataset(X, y, params={"verbose": -1}, **kw)
    return lgb.train(p, dall, rounds)


fit_base_learner = _fit_one  # the one base learner every meta-learner (and the offer basket model) uses


def _validate(X: pd.DataFrame, arm: np.ndarray, outcomes: pd.DataFrame, control: str, min_rows: int) -> None:
    if not (len(X) == len(arm) == len(outcomes)):
        raise RebuyError(f"uplift: {len(X)} feature rows, {len(arm)} arms, {len(outcomes)} outcome rows")
    counts = pd.Series(arm).value_counts()
    if control not in counts:
        raise DataError(
            f"no rows in the control arm {control!r}; arms present: {sorted(counts.index)}",
            column="arm",
            hint="name the control arm that is in the data",
        )
    small = counts[counts < min_rows]
    if len(small):
        raise DataError(
            f"arms with fewer than {min_rows} rows cannot be learned from: {small.to_dict()}",
            column="arm",
            hint="drop those arms or collect more data",
        )
    for c in outcomes.columns:
        if not np.isfinite(outcomes[c].to_numpy(dtype=float)).all():
            raise DataError(
                "outcome has missing or non-finite values",
                column=c,
                hint="fill or drop the rows without an outcome",
            )


def fit_uplift(
    X: pd.DataFrame,
    arm: Sequence[str] | np.ndarray,
    outcomes: pd.DataFrame,
    control: str,
    *,
    learner: str = "t",
    categorical: Sequence[str] = (),
    encoder: Encoder | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    min_rows: int = 30,
    reuse: UpliftModel | None = None,
) -> UpliftModel:
    """Fit a T-, X- or S-learner for every arm vs `control` and every outcome column.

    `reuse`: a model fitted on the same rows whose per-arm outcome models ("mu") are taken instead of
    refitted — the X-learner's first stage is exactly the T-learner, so comparing both costs one fit less.

    Outcomes with only 0/1 values get binary base learners (probabilities), the others regression.
    The X-learner's blend weight is the treated share within (arm, control), the constant propensity
    of a randomized design.
    """
    if learner not in ALL_LEARNERS:
        raise RebuyError(f"unknown uplift learner {learner!r}; known: {list(ALL_LEARNERS)}")
    arm = np.asarray(arm, dtype=object)
    _validate(X, arm, outcomes, control, min_rows)
    enc = encoder or Encoder.fit(X, categorical)
    M = enc.transform(X)
    cat_idx = enc.categorical_indices
    arms = sorted(a for a in set(arm.tolist()) if a != control)
    targets = list(outcomes.columns)
    binary = {t: _is_binary(outcomes[t].to_numpy(dtype=float)) for t in targets}
    boosters: dict[str, lgb.Booster] = {}
    g: dict[str, float] = {}
    codes = np.array([[control, *arms].index(a) for a in arm], dtype=np.float64)
    for ti, t in enumerate(targets):
        y = outcomes[t].to_numpy(dtype=float)
        if learner == "s":  # one model, the arm a categorical feature after the encoded ones
            MS = np.column_stack([M, codes])
            boosters[f"{t}|s"] = _fit_one(MS, y, binary[t], [*cat_idx, M.shape[1]], seed + 101 * ti, params)
            continue
        for ai, a in enumerate([control, *arms]):
            key = f"{t}|mu|{a}"
            if reuse is not None and key in reuse.boosters:
                boosters[key] = reuse.boosters[key]
                continue
            m = arm == a
            boosters[key] = _fit_one(M[m], y[m], binary[t], cat_idx, seed + 101 * ti + ai, params)
        if learner == "x":
            m0 = arm == control
            mu0 = boosters[f"{t}|mu|{control}"]
            for ai, a in enumerate(arms):
                m1 = arm == a
                d1 = y[m1] - mu0.predict(M[m1], num_threads=1)
                d0 = boosters[f"{t}|mu|{a}"].predict(M[m0], num_threads=1) - y[m0]
                s = seed + 101 * ti + 17 * ai + 7
                boosters[f"{t}|tau1|{a}"] = _fit_one(M[m1], d1, False, cat_idx, s, params)
                boosters[f"{t}|tau0|{a}"] = _fit_one(M[m0], d0, False, cat_idx, s + 1, params)
                g[a] = float(m1.sum() / (m1.sum() + m0.sum()))
    return UpliftModel(
        learner,
        control,
        arms,
        targets,
        binary,
        enc,
        boosters,
        g,
        {"n_rows": len(X), "arm_counts": pd.Series(arm).value_counts().to_dict()},
    )


def mean_qini(
    model: UpliftModel,
    X: pd.DataFrame,
    arm: np.ndarray,
    y: np.ndarray,
    target: str,
    propensity: np.ndarray | None = None,
) -> dict[str, float]:
    """Qini AUC per arm on held-out rows of (arm, control), ranked by the arm's predicted effect on `target`."""
    arm = np.asarray(arm, dtype=object)
    M = model.encoder.transform(X)
    eff = model.effects_frame(M, target)
    w = 1.0 / propensity if propensity is not None else None
    out = {}
    for a in model.arms:
        m = (arm == a) | (arm == model.control)
        out[a] = qini(eff[a].to_numpy()[m], y[m], arm[m] == a, None if w is None else w[m])
    return out


@dataclass
class Selection:
    """The kept model and how every candidate learner scored on the held-out rows."""

    model: UpliftModel
    scores: pd.DataFrame  # learner, arm, qini
    chosen: str


def select_learner(
    train: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
    test: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
    control: str,
    select_on: str,
    *,
    learners: Sequence[str] = LEARNERS,
    categorical: Sequence[str] = (),
    test_propensity: np.ndarray | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    min_rows: int = 30,
) -> Selection:
    """Fit each learner on `train`, score mean Qini on `test` for outcome `select_on`, keep the best.

    Ties (e.g. identical rankings) keep the earlier learner in `learners` — the simpler T-learner first.
    """
    Xtr, atr, ytr = train
    Xte, ate, yte = test
    enc = Encoder.fit(Xtr, categorical)
    rows: list[dict[str, Any]] = []
    models: dict[str, UpliftModel] = {}
    for name in learners:
        mdl = fit_uplift(
            Xtr,
            atr,
            ytr,
            control,
            learner=name,
            encoder=enc,
            seed=seed,
            params=params,
            min_rows=min_rows,
            reuse=next(iter(models.values()), None),
        )
        models[name] = mdl
        for a, q in mean_qini(
            mdl, Xte, ate, yte[select_on].to_numpy(dtype=float), select_on, test_propensity
        ).items():
            rows.append({"learner": name, "arm": a, "qini": q})
    scores = pd.DataFrame(rows)
    means = scores.groupby("learner", sort=False)["qini"].mean()
    best = max(
        learners, key=lambda n: (np.nan_to_num(means.get(n, -np.inf), nan=-np.inf), -learners.index(n))
    )
    chosen = models[best]
    chosen.meta["selection"] = {"select_on": select_on, "mean_qini": {k: float(v) for k, v in means.items()}}
    return Selection(chosen, scores, best)


def roundtrip(model: UpliftModel) -> UpliftModel:
    """Save and load through a temporary directory (what the registry does); tests and benchmarks use it."""
    with tempfile.TemporaryDirectory() as tmp:
        return UpliftModel.load(model.save(Path(tmp) / "m"))
