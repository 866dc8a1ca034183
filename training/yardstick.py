"""The quality yardstick on simulated data: the observable ceiling and the trait ceiling (DESIGN "Quality yardstick").

The oracle (true probability from the simulator's full hidden state) is an upper bound no model of the shop's
data can reach. The honest target is the **observable ceiling**: a LightGBM model fit to the oracle's truth
(the true probability or expected value, not the realised label) on rebuy's own features of the spec's
FeatureService, trained on independent seeds' shops (twice the benchmark shop's data), with fixed parameters
at least as large as rebuy's search space allows (no tuning toward a number), scored on the benchmark shop's
test rows. The **trait ceiling** is the same fit with the hidden state and traits added, so the cost of what
no table shows is visible; the group ceilings (state only, traits only) say which hidden part the features miss.

The core (`ceiling_params`, `fit_ceiling`, `Ceiling`) is pure: arrays in, a booster out. `shop_frame` and
`hidden_frame` are the thin adapters to the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from rebuy.config import Config
from rebuy.errors import DataError
from training import metrics as M
from training.specs import ModelSpec
from training.tuning import base_params

# what each scorer of the quality table is, in the table's order
SCORERS = ("model", "recency", "bgnbd", "observable_ceiling", "trait_ceiling", "oracle")
OBSERVABLE, TRAIT = "observable_ceiling", "trait_ceiling"
# hidden per-customer traits (fixed) and hidden state at the cutoff (what the oracle knows, no table shows)
TRAITS = (
    "cycle_scale_days",
    "cycle_shape",
    "p_drop",
    "conversion",
    "typical_value",
    "price_sensitivity",
    "message_averse",
    "revive_chance",
)
STATE = ("hidden_alive", "hidden_in_intent")
GROUPS: Mapping[str, tuple[str, ...]] = {"state": STATE, "traits": TRAITS}
ROUNDS, EARLY_STOP, HOLDOUT = 2000, 30, 0.2

# (spec, test keys, test feature matrix) -> {scorer name: predictions on those rows}
CeilingFn = Callable[[ModelSpec, pd.DataFrame, np.ndarray], dict[str, np.ndarray]]


def ceiling_params(spec: ModelSpec, seed: int) -> dict[str, Any]:
    """Fixed LightGBM settings at the large end of the spec's search space, fit to a continuous truth.

    Leaves at the space's maximum, leaf size and L2 at its minimum, every feature and row (no subsampling):
    the ceiling must not be held back by capacity. The learning rate is the space's middle-to-high 0.1 (early
    stopping on held-out customers of the ceiling's own shops picks the number of trees).
    """
    space = spec.search_space
    p = base_params(spec, seed)
    p.update(
        {
            # a probability target: cross-entropy accepts labels in [0, 1]; an expectation: least squares
            "objective": "cross_entropy" if spec.is_binary else "regression",
            "metric": "cross_entropy" if spec.is_binary else "l2",
            "learning_rate": 0.1,
            "num_leaves": int(space["num_leaves"].high) if "num_leaves" in space else 63,
            "min_data_in_leaf": int(space["min_data_in_leaf"].low) if "min_data_in_leaf" in space else 20,
            "lambda_l2": float(space["lambda_l2"].low) if "lambda_l2" in space else 0.0,
            "feature_fraction": 1.0,
            "bagging_fraction": 1.0,
            "bagging_freq": 0,
        }
    )
    return p


@dataclass(frozen=True)
class Ceiling:
    """A booster fit to the truth on `feature_names` (a ceiling of one kind for one spec)."""

    spec_name: str
    kind: str
    feature_names: list[str]
    booster: lgb.Booster
    rows: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, num_threads=1))


def fit_ceiling(
    spec: ModelSpec,
    X: np.ndarray,
    truth: np.ndarray,
    feature_names: Sequence[str],
    *,
    groups: np.ndarray | None = None,
    seed: int = 7,
    kind: str = OBSERVABLE,
) -> Ceiling:
    """Fit the truth (a probability or expectation per row) on X; early stopping on held-out groups.

    `groups` (e.g. customer ids) keeps one customer's rows on one side of the early-stopping holdout; without
    it rows are held out at random (seeded).
    """
    truth = np.asarray(truth, dtype=float)
    if len(X) != len(truth) or len(X) < 50:
        raise DataError(
            f"ceiling for {spec.name!r}: {len(X)} rows and {len(truth)} truth values (need >= 50)"
        )
    if not np.isfinite(truth).all():
        raise DataError(
            f"ceiling for {spec.name!r}: the truth has {int((~np.isfinite(truth)).sum())} missing values"
        )
    if spec.is_binary and ((truth < 0) | (truth > 1)).any():
        raise DataError(f"ceiling for {spec.name!r}: a probability truth must lie in [0, 1]")
    if groups is not None:
        key = pd.util.hash_pandas_object(pd.Series(groups).astype(str), index=False).to_numpy() % 1000
        held = key < round(HOLDOUT * 1000)
    else:
        held = np.random.default_rng(seed).random(len(X)) < HOLDOUT
    names = list(feature_names)
    dtrain = lgb.Dataset(X[~held], truth[~held], feature_name=names, free_raw_data=False)
    dvalid = lgb.Dataset(X[held], truth[held], reference=dtrain, free_raw_data=False)
    booster = lgb.train(
        ceiling_params(spec, seed),
        dtrain,
        num_boost_round=ROUNDS,
        valid_sets=[dvalid],
        valid_names=["valid"],
        # a smooth truth keeps improving the loss by crumbs: stop when a round gains less than a millionth
        # of the truth's spread (cross-entropy is already on a 0-1 scale)
        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False, min_delta=_min_delta(spec, truth))],
    )
    best = booster.best_iteration or booster.current_iteration()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return Ceiling(spec.name, kind, names, booster, len(X))


def _min_delta(spec: ModelSpec, truth: np.ndarray) -> float:
    return 1e-6 if spec.is_binary else 1e-6 * float(np.var(truth))


def scorer_metrics(spec: ModelSpec, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return M.binary_metrics(y, pred) if spec.is_binary else M.regression_metrics(y, pred)


# --- the simulator adapters ---------------------------------------------------------------------------------


def truth_column(spec: ModelSpec) -> str:
    return f"truth__{spec.name}"


def spec_truth(sim: Any, keys: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """The oracle's truth of `spec` for (customer_id, cutoff) rows (as training.run.simulator_oracle)."""
    if spec.label in ("churn", "repurchase"):
        p = sim.truth_at(keys, horizon_days=spec.horizon_days)["p_order"].to_numpy(dtype=float)
        return 1.0 - p if spec.label == "churn" else p
    if spec.label == "spend_next":
        t = sim.truth_at(keys, horizon_days=spec.horizon_days, spend_days=spec.horizon_days)
        return t["expected_spend"].to_numpy(dtype=float)
    if spec.label == "days_to_next_order":
        cap = int(spec.cap_days or spec.horizon_days)
        t = sim.truth_at(keys, horizon_days=spec.horizon_days, spend_days=cap)
        return t["expected_days_to_next_order"].to_numpy(dtype=float)
    raise DataError(f"no truth for label {spec.label!r} of spec {spec.name!r}")


def hidden_frame(sim: Any, keys: pd.DataFrame) -> pd.DataFrame:
    """Hidden traits and the hidden state at each cutoff for (customer_id, cutoff) rows, in their order."""
    traits = sim.customer_truth()
    have = [c for c in TRAITS if c in traits.columns]
    out = keys[["customer_id", "cutoff"]].reset_index(drop=True)
    out = out.merge(traits[["customer_id", *have]], on="customer_id", how="left")
    for c in TRAITS:
        if c not in out.columns:
            out[c] = np.nan
    # state at the cutoff (day resolution, as the oracle sees it): alive and in a purchase-intent episode
    idx = sim._index(out["customer_id"])
    days = np.array([sim.day_of(t) for t in out["cutoff"]], dtype=np.int64)
    alive, intent = np.zeros(len(out)), np.zeros(len(out))
    for d, st in sim._replay_days(sorted(set(days.tolist()))):
        rows = np.flatnonzero(days == d)
        alive[rows] = np.asarray(st.alive[idx[rows]] & st.active[idx[rows]], dtype=float)
        intent[rows] = np.asarray(st.intent_left[idx[rows]] > 0, dtype=float)
    out["hidden_alive"], out["hidden_in_intent"] = alive, intent
    return out


def shop_frame(
    cfg: Config, sim: Any, tables: Mapping[str, pd.DataFrame], specs: Sequence[ModelSpec]
) -> dict[str, pd.DataFrame]:
    """Per spec: its grid's rows of one simulated shop (population applied) with every feature, the truth of
    the spec (`truth__<name>`) and the hidden columns. The features are computed by features.compute, the
    code behind the Feast snapshots, so they match what `rebuy train` reads."""
    from features.compute import compute_features, epoch_seconds, request_time_features
    from features.training_set import data_end
    from training.baselines import rfm_at
    from training.split import spec_grid

    end = min(pd.Timestamp(sim.now).tz_convert("UTC"), data_end(tables))
    grids = {s.name: spec_grid(cfg, end, s) for s in specs}
    cutoffs = sorted(set().union(*grids.values()))
    df = compute_features(dict(tables), cutoffs)
    for k, v in request_time_features(df, epoch_seconds(df["cutoff"])).items():
        df[k] = v
    df = df.merge(rfm_at(tables["orders"], df[["customer_id", "cutoff"]]), on=["customer_id", "cutoff"])
    out: dict[str, pd.DataFrame] = {}
    hidden_cache: pd.DataFrame | None = None
    for s in specs:
        part = df[df["cutoff"].isin(pd.DatetimeIndex(grids[s.name]))]
        if s.population:
            part = part.query(s.population)
        part = part.reset_index(drop=True)
        part[truth_column(s)] = spec_truth(sim, part[["customer_id", "cutoff"]], s)
        if hidden_cache is None:
            hidden_cache = hidden_frame(sim, df[["customer_id", "cutoff"]])
        part = part.merge(hidden_cache, on=["customer_id", "cutoff"], how="left")
        out[s.name] = part
    return out


@dataclass
class Yardstick:
    """The ceilings of each spec, fitted once on independent shops, scored on any benchmark shop's test rows."""

    ceilings: dict[str, dict[str, Ceiling]]  # spec -> kind -> ceiling
    features: dict[str, list[str]]  # spec -> the FeatureService's features (column order of test_X)
    hidden: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # test keys -> hidden columns
    info: dict[str, Any] = field(default_factory=dict)

    def for_shop(self, hidden: Callable[[pd.DataFrame], pd.DataFrame] | None) -> Yardstick:
        """The same ceilings, scored on another shop (its hidden columns come from its own simulator)."""
        return Yardstick(self.ceilings, self.features, hidden, self.info)

    def predict(self, spec: ModelSpec, keys: pd.DataFrame, X: np.ndarray) -> dict[str, np.ndarray]:
        kinds = self.ceilings.get(spec.name, {})
        out: dict[str, np.ndarray] = {}
        hid: pd.DataFrame | None = None
        for kind, c in kinds.items():
            extra = c.feature_names[len(self.features[spec.name]) :]
            if extra:
                if self.hidden is None:
                    continue  # a trait ceiling needs the scored shop's hidden columns
                if hid is None:
                    hid = self.hidden(keys.reset_index(drop=True))
                Xc = np.hstack([X, hid[extra].to_numpy(dtype=float)])
            else:
                Xc = X
            out[kind] = c.predict(Xc)
        return out


def ceiling_kinds(features: Sequence[str]) -> dict[str, list[str]]:
    """kind -> feature list: the observable ceiling, one per hidden group, and the trait ceiling (all)."""
    f = list(features)
    kinds = {OBSERVABLE: f}
    for g, cols in GROUPS.items():
        kinds[f"ceiling_plus_{g}"] = [*f, *cols]
    kinds[TRAIT] = [*f, *STATE, *TRAITS]
    return kinds


def build_yardstick(
    cfg: Config,
    specs: Sequence[ModelSpec],
    frames: Sequence[Mapping[str, pd.DataFrame]],
    features: Mapping[str, Sequence[str]],
    *,
    seed: int = 7,
    kinds: Sequence[str] | None = None,
) -> Yardstick:
    """Fit each spec's ceilings on the rows of all `frames` (one `shop_frame` per independent shop).

    With two or more shops, the observable ceiling is also fitted on the first shop alone
    (`observable_ceiling_1x`): scoring both on the same test rows is the convergence check.
    """
    del cfg
    ceilings: dict[str, dict[str, Ceiling]] = {}
    for s in specs:
        feats = list(features[s.name])
        # customer ids repeat across shops: the early-stopping holdout groups by (shop, customer)
        rows = pd.concat([f[s.name].assign(_shop=i) for i, f in enumerate(frames)], ignore_index=True)
        truth = rows[truth_column(s)].to_numpy(dtype=float)
        groups = rows["customer_id"].astype(str) + "@" + rows["_shop"].astype(str)
        ceilings[s.name] = {}
        for kind, cols in ceiling_kinds(feats).items():
            if kinds is not None and kind not in kinds:
                continue
            X = rows[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            ceilings[s.name][kind] = fit_ceiling(
                s, X, truth, cols, groups=groups.to_numpy(), seed=seed, kind=kind
            )
        if len(frames) > 1 and (kinds is None or OBSERVABLE in kinds):
            one = frames[0][s.name]
            ceilings[s.name][f"{OBSERVABLE}_1x"] = fit_ceiling(
                s,
                one[feats].to_numpy(dtype=np.float64, na_value=np.nan),
                one[truth_column(s)].to_numpy(dtype=float),
                feats,
                groups=one["customer_id"].to_numpy(),
                seed=seed,
                kind=f"{OBSERVABLE}_1x",
            )
    return Yardstick(ceilings, {s.name: list(features[s.name]) for s in specs})


def simulated_yardstick(
    cfg: Config,
    sim_config: Any,
    specs: Sequence[ModelSpec],
    *,
    seeds: Sequence[int],
    kinds: Sequence[str] | None = None,
) -> Yardstick:
    """Ceilings fit on independent shops: `sim_config` (the benchmark shop's dataclasses.SimConfig) with each
    of `seeds` instead of its own seed, so two seeds give twice the benchmark shop's data over the same dates.
    """
    import dataclasses

    from features.training_set import feature_names
    from rebuy.contract import empty
    from rebuy.simulator import ShopSimulator

    if sim_config.seed in seeds:
        raise DataError(
            f"ceiling seeds {list(seeds)} include the benchmark shop's own seed {sim_config.seed}"
        )
    frames = []
    for s in seeds:
        sim = ShopSimulator(dataclasses.replace(sim_config, seed=s))
        tables = sim.run_history()
        if not sim_config.events:
            tables["events"] = empty("events")
        frames.append(shop_frame(cfg, sim, tables, specs))
    feats = {s.name: feature_names(cfg, s.feature_service) for s in specs}
    ys = build_yardstick(cfg, specs, frames, feats, seed=cfg.training.optuna.seed, kinds=kinds)
    ys.info = {
        "seeds": list(seeds),
        "customers_per_shop": sim_config.customers,
        "rows": {s.name: {k: c.rows for k, c in ys.ceilings[s.name].items()} for s in specs},
    }
    return ys


def simulator_hidden(sim: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The scored shop's hidden columns for a trait ceiling (Yardstick.for_shop)."""

    def hidden(keys: pd.DataFrame) -> pd.DataFrame:
        return hidden_frame(sim, keys)

    return hidden


def quality_markdown(quality: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """The one quality table as markdown: per model, the scorers in the table's order with AUC, ECE, PR AUC,
    and for regressions MAE / RMSE / Spearman. For reports (the campaign report on simulated data, benchmarks)
    given `{model name: TrainResult.quality}`."""
    cols = ("roc_auc", "ece", "pr_auc", "mae", "rmse", "spearman")
    lines = [
        "| model | scorer | ROC AUC | ECE | PR AUC | MAE | RMSE | Spearman |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, q in quality.items():
        head = [k for k in SCORERS if k in q]
        for who in [*head, *sorted(set(q) - set(head))]:
            cells = [q[who].get(c) for c in cols]
            lines.append(
                f"| {name} | {who} | " + " | ".join("" if v is None else f"{v:.4f}" for v in cells) + " |"
            )
    return "\n".join(lines)
