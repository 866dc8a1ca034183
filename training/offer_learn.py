"""Next-best-offer learning: the served offer model (`learn_offer_model`).

The incremental margin comes from the incremental *conversion* times the catalogue's known margin and costs
(`MarginModel`), centred on each arm's measured average effect, with its spread kept only where validation
rows surely favour it; learner, tuning and shrink are chosen on a validation part of the training rows, so
the held-out rows the promotion gate values on stay untouched. A T-learner on the realised margin competes
with it on those validation rows (paired doubly robust value, `choose_margin_path`): where offers also move
what a converter spends (large effects), only the realised margin sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import Config, OffersConfig
from rebuy.errors import DataError, RebuyError
from training.offer_data import (
    CONVERSION,
    FEATURE_SERVICE,
    MARGIN,
    N_ORDERS,
    REGISTERED_NAME,
    REVENUE,
    LoggedSet,
    split_logged,
)
from training.offer_eval import (
    Current,
    OutcomeEvaluation,
    evaluate_uplift,
    one_hot,
    personalised_actions,
    restrict,
)
from training.ope import (
    dr_difference,
    evaluate,
)
from training.policy import NONE
from training.uplift import (
    ALL_LEARNERS,
    Encoder,
    UpliftModel,
    fit_base_learner,
    fit_uplift,
    select_learner,
)

# --- incremental margin from incremental conversion ------------------------------------------------------

SHRINK_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_BASKET_ROWS = 200  # converted rows below which revenue and orders per converter are plain averages


def _basket(b: Any, X: np.ndarray) -> np.ndarray:
    if isinstance(b, float):
        return np.full(len(X), b)
    return np.asarray(b.predict(X, num_threads=1), dtype=float)


@dataclass(frozen=True)
class Economics:
    """What one arm costs and keeps: margin share of revenue, redemption share, shipping per order, fixed cost."""

    margin: float
    redemption_share: float
    shipping_per_order: float
    cost: float

    @classmethod
    def of(cls, arm: str, offers: OffersConfig) -> Economics:
        oc = offers.catalogue.get(arm)
        return cls(
            offers.margin,
            oc.redemption_share if oc else 0.0,
            offers.shipping_cost if arm == "free_shipping" else 0.0,
            oc.cost if oc else 0.0,
        )


@dataclass
class MarginModel:
    """Incremental margin per arm = what an arm's conversion probability earns, net of its known costs.

    Why not regress the realised margin: one order's value is far noisier than whether an order happens, and
    a learner on margins mostly fits basket-size noise (benchmarks/offer.py: a T-learner on margins does worse
    than the best constant offer). Here the uplift model learns conversion per arm, one pooled model learns
    revenue and orders *given* a conversion (from every arm's converters), and the catalogue's known costs
    turn them into money:  level_a(x) = P_a(x)·((margin − redemption_a)·R(x) − shipping_a·K(x)) − cost_a.

    Effects are `center + shrink·(effect(x) − model_mean)`: `center` is each arm's average effect on the
    realised margin estimated straight from the randomized rows (difference of propensity-weighted means:
    unbiased, where the model's own average can be off — an offer that moves revenue more than conversion,
    like points for high-value customers, is the measured case), `model_mean` the model's average effect on
    the same rows, and the model only says who gains more or less than average. With shrink 0 the policy is
    "the best arm for everyone", with 1 the full estimated spread; shrink is chosen on validation rows by the
    doubly robust value of the resulting policy (`choose_shrink`). It presents the UpliftModel interface the
    evaluation and the policy use (`effects_frame`, `levels_matrix`).
    """

    conversion: UpliftModel
    revenue: Any  # lgb.Booster: E[revenue | converted, x], or a float (too few converters for a model)
    orders: Any  # lgb.Booster: E[orders | converted, x], or a float
    economics: dict[str, Economics]
    shrink: float = 1.0
    center: dict[str, float] = field(default_factory=dict)
    model_mean: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=lambda: [MARGIN])

    @property
    def encoder(self) -> Encoder:
        return self.conversion.encoder

    @property
    def feature_names(self) -> list[str]:
        return self.conversion.feature_names

    @property
    def arms(self) -> list[str]:
        return self.conversion.arms

    @property
    def control(self) -> str:
        return self.conversion.control

    @property
    def learner(self) -> str:
        return f"conversion:{self.conversion.learner}"

    def _levels(self, X: np.ndarray) -> dict[str, np.ndarray]:
        X = self.conversion._check(X)
        p = {a: v[0] for a, v in self.conversion.predict_levels(X).items()}
        r = np.maximum(_basket(self.revenue, X), 0.0)
        k = np.maximum(_basket(self.orders, X), 1.0)
        out = {}
        for a, pa in p.items():
            e = self.economics[a]
            out[a] = (
                np.clip(pa, 0.0, 1.0) * ((e.margin - e.redemption_share) * r - e.shipping_per_order * k)
                - e.cost
            )
        return out

    def modelled_margin(self, X: np.ndarray, arm: np.ndarray, converted: np.ndarray) -> np.ndarray:
        """Per row: converted × what a converter of these features earns under its arm, net of the arm's cost.

        A lower-variance outcome for off-policy evaluation than the realised margin: the basket-size noise
        is replaced by the basket models' expectation (known economics, revenue and orders per converter
        from the training rows). Its price: unbiased only if an offer does not change what a converter of
        the same features spends (the basket models are pooled over arms).
        """
        X = self.conversion._check(X)
        arm = np.asarray(arm, dtype=object)
        r = np.maximum(_basket(self.revenue, X), 0.0)
        k = np.maximum(_basket(self.orders, X), 1.0)
        out = np.zeros(len(X))
        conv = np.asarray(converted, dtype=float)
        for a in set(arm.tolist()):
            if a not in self.economics:
                raise RebuyError(f"the margin model knows no economics for arm {a!r}")
            e, m = self.economics[a], arm == a
            out[m] = conv[m] * ((e.margin - e.redemption_share) * r[m] - e.shipping_per_order * k[m]) - e.cost
        return out

    def raw_effects(self, X: np.ndarray) -> pd.DataFrame:
        lv = self._levels(X)
        return pd.DataFrame({a: lv[a] - lv[self.control] for a in self.arms})

    def effects_frame(self, X: np.ndarray, target: str = MARGIN) -> pd.DataFrame:
        self._target(target)
        raw = self.raw_effects(X)
        if not self.center:
            return raw
        c, mm, k = self.center, self.model_mean, self.shrink
        return pd.DataFrame({a: c[a] + k * (raw[a] - mm.get(a, c[a])) for a in self.arms})

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        eff = self.effects_frame(X)
        return {a: (eff[a].to_numpy(),) for a in self.arms}

    def levels_matrix(self, X: np.ndarray, target: str, actions: Sequence[str]) -> np.ndarray:
        self._target(target)
        lv = self._levels(X)
        return np.column_stack([lv[a] for a in actions])

    def with_shrink(self, shrink: float) -> MarginModel:
        return MarginModel(
            self.conversion,
            self.revenue,
            self.orders,
            self.economics,
            shrink,
            self.center,
            self.model_mean,
            dict(self.meta),
        )

    def _target(self, target: str) -> None:
        if target != MARGIN:
            raise RebuyError(f"the margin model predicts {MARGIN!r}, not {target!r}")

    def save(self, path: Path) -> Path:
        path = Path(path)
        self.conversion.save(path / CONVERSION)
        basket: dict[str, float | str] = {}
        for name, b in (("revenue", self.revenue), ("orders", self.orders)):
            if isinstance(b, float):
                basket[name] = b
            else:
                b.save_model(str(path / f"{name}.txt"))
                basket[name] = f"{name}.txt"
        doc = {
            "format": "rebuy-margin-v1",
            "basket": basket,
            "economics": {a: vars(e) for a, e in self.economics.items()},
            "shrink": self.shrink,
            "center": self.center,
            "model_mean": self.model_mean,
            "meta": self.meta,
        }
        (path / "margin.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> MarginModel:
        import lightgbm as lgb

        path = Path(path)
        doc = json.loads((path / "margin.json").read_text(encoding="utf-8"))
        if doc.get("format") != "rebuy-margin-v1":
            raise RebuyError(f"{path / 'margin.json'}: unknown format {doc.get('format')!r}")
        basket = {
            k: float(v) if isinstance(v, int | float) else lgb.Booster(model_file=str(path / v))
            for k, v in doc["basket"].items()
        }
        return cls(
            UpliftModel.load(path / CONVERSION),
            basket["revenue"],
            basket["orders"],
            {a: Economics(**e) for a, e in doc["economics"].items()},
            float(doc["shrink"]),
            {a: float(v) for a, v in doc["center"].items()},
            {a: float(v) for a, v in doc.get("model_mean", {}).items()},
            dict(doc.get("meta", {})),
        )


def fit_margin_model(
    conversion: UpliftModel,
    data: LoggedSet,
    offers: OffersConfig,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
) -> MarginModel:
    """The pooled basket models on `data`'s converted rows, around a fitted conversion uplift model.

    `center` (each arm's measured average effect on the margin) and `model_mean` are taken on `data`'s own
    rows, so shrinking never leans on held-out rows.
    """
    for c in (CONVERSION, MARGIN, REVENUE, N_ORDERS):
        if c not in data.outcomes:
            raise DataError(
                f"the margin model needs outcome {c!r}",
                column=c,
                hint="build logged rows with conversion, revenue and n_orders (decision_outcomes does)",
            )
    conv = data.outcomes[CONVERSION].to_numpy(dtype=float) > 0
    if not conv.any():
        raise DataError(
            "no converted rows: nothing says what an order is worth",
            column=CONVERSION,
            hint="collect more randomized decisions (a longer exploration or an imported campaign)",
        )
    M = conversion.encoder.transform(data.X)
    cat = conversion.encoder.categorical_indices
    rev_y = data.outcomes[REVENUE].to_numpy(dtype=float)[conv]
    ord_y = data.outcomes[N_ORDERS].to_numpy(dtype=float)[conv]
    if conv.sum() < MIN_BASKET_ROWS:  # a small shop: the average basket beats a model of a few rows
        rev: Any = float(rev_y.mean())
        ords: Any = float(ord_y.mean())
    else:
        rev = fit_base_learner(M[conv], rev_y, False, cat, seed + 11, params)
        ords = fit_base_learner(M[conv], ord_y, False, cat, seed + 12, params)
    arms = [conversion.control, *conversion.arms]
    model = MarginModel(conversion, rev, ords, {a: Economics.of(a, offers) for a in arms})
    model.model_mean = {str(a): float(v) for a, v in model.raw_effects(M).mean().items()}
    model.center = measured_effects(data, MARGIN, conversion.control, conversion.arms)
    return model


def measured_effects(data: LoggedSet, outcome: str, control: str, arms: Sequence[str]) -> dict[str, float]:
    """Each arm's average effect vs control: difference of propensity-weighted (Hajek) means of the outcome."""
    y = data.outcomes[outcome].to_numpy(dtype=float)
    arm = np.asarray(data.arm, dtype=object)
    w = 1.0 / np.asarray(data.propensity, dtype=float)

    def mean(a: str) -> float:
        m = arm == a
        if not m.any():
            raise DataError(f"no rows in arm {a!r}", column="arm", hint="every arm needs logged rows")
        return float(np.sum(w[m] * y[m]) / np.sum(w[m]))

    base = mean(control)
    return {a: mean(a) - base for a in arms}


def _margin_validation(
    model: UpliftModel | MarginModel, valid: LoggedSet
) -> tuple[list[str], LoggedSet, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a DR comparison of margin policies on `valid` needs: the model's actions, the rows logged with
    one of them, their encoded features, logged action index and margin, and the model's margin levels."""
    actions = [model.control, *model.arms]
    v = valid.take(np.flatnonzero(np.isin(np.asarray(valid.arm, dtype=object), actions)))
    M = model.encoder.transform(v.X)
    a_idx = np.array([actions.index(a) for a in np.asarray(v.arm, dtype=object)])
    y = v.outcomes[MARGIN].to_numpy(dtype=float)
    return actions, v, M, a_idx, y, model.levels_matrix(M, MARGIN, actions)


def choose_shrink(
    model: MarginModel, valid: LoggedSet, grid: Sequence[float] = SHRINK_GRID
) -> tuple[MarginModel, dict[float, float]]:
    """The shrink whose greedy policy has the highest doubly robust margin on `valid`, among those that
    surely beat the best-arm-for-everyone policy (shrink 0): the paired DR difference's lower 95% bound must
    be > 0, else shrink 0 is kept.

    Why the bound: the gains personalising can buy are small next to the noise of a margin (benchmarks/offer.py:
    a few percent of the oracle), and picking the best of five noisy values otherwise moves the policy away
    from the best constant on noise alone.
    """
    actions, v, M, a_idx, y, q_hat = _margin_validation(model, valid)
    grid = sorted({0.0, *map(float, grid)})
    pis = {
        s: one_hot(personalised_actions(model.with_shrink(s), M, MARGIN, v.allowed), actions) for s in grid
    }
    diffs = {s: dr_difference(pis[s], pis[0.0], a_idx, v.propensity, y, q_hat) for s in grid}
    values = {s: float(d.value) for s, d in diffs.items()}
    lows = {s: float(d.low) for s, d in diffs.items()}
    sure = [s for s in grid if s == 0.0 or lows[s] > 0]
    best = max(sure, key=lambda s: (values[s], -s))
    chosen = model.with_shrink(best)
    chosen.meta["shrink_vs_constant_dr"] = {f"{k:g}": {"value": values[k], "low": lows[k]} for k in grid}
    return chosen, values


MARGIN_PATHS: tuple[str, ...] = ("conversion_economics", "realised_margin_t")
PATH_RULES: tuple[str, ...] = ("lower_bound", "point")


def choose_margin_path(
    candidates: Mapping[str, UpliftModel | MarginModel],
    valid: LoggedSet,
    incumbent: str,
    rule: str = "lower_bound",
) -> tuple[str, pd.DataFrame]:
    """Which margin model's greedy policy to keep, by the paired doubly robust difference on `valid`.

    Every candidate's policy is valued against the incumbent's on the same randomized rows (paired: the
    margin's own noise, shared by both, cancels). `rule="lower_bound"` switches away from the incumbent
    only when the difference's lower 95% bound is above 0 (as the shrink and the promotion gate do);
    `"point"` keeps the highest point estimate. The reward model q̂ is the incumbent's (any q̂ leaves a
    DR difference unbiased under known propensities; it only changes the variance). If `valid` also chose
    the incumbent's shrink, the incumbent carries that choice's small optimism: the comparison leans
    towards keeping it.

    Returns the chosen name and a table: path, value, se, low, high, n (candidate − incumbent) and dr
    (the candidate's own DR value).
    """
    if rule not in PATH_RULES:
        raise RebuyError(f"unknown path rule {rule!r}; known: {list(PATH_RULES)}")
    if incumbent not in candidates:
        raise RebuyError(f"incumbent {incumbent!r} is not among the candidates {sorted(candidates)}")
    base = candidates[incumbent]
    actions, v, _, a_idx, y, q_hat = _margin_validation(base, valid)

    def pi(model: UpliftModel | MarginModel) -> np.ndarray:
        acts = personalised_actions(model, model.encoder.transform(v.X), MARGIN, v.allowed)
        return one_hot(restrict(acts, v.allowed, base.control), actions)

    pis = {name: pi(m) for name, m in candidates.items()}
    rows = []
    for name in candidates:
        d = dr_difference(pis[name], pis[incumbent], a_idx, v.propensity, y, q_hat)
        own = evaluate(pis[name], a_idx, v.propensity, y, q_hat)["dr"]
        rows.append({"path": name, **{k: d.to_dict()[k] for k in ("value", "se", "low", "high", "n")}})
        rows[-1]["dr"] = own.value
    table = pd.DataFrame(rows)
    score = table["low"] if rule == "lower_bound" else table["value"]
    ok = table[(score > 0) | (table["path"] == incumbent)]
    chosen = str(ok["path"].to_numpy()[int(np.argmax(ok["value"].to_numpy()))])
    table["chosen"] = table["path"] == chosen
    return chosen, table


@dataclass
class OfferFit:
    """A learned offer model and how it did on held-out rows (conversion ranking, margin policy values).

    `paths`: the margin candidates' paired DR comparison on the validation rows (`choose_margin_path`);
    `candidates`: every fitted margin model by path name (the kept one is `model.margin`).
    """

    model: OfferModel
    conversion: OutcomeEvaluation
    margin: OutcomeEvaluation
    shrink_values: dict[float, float]
    tuning: dict[str, Any] = field(default_factory=dict)
    paths: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidates: dict[str, UpliftModel | MarginModel] = field(default_factory=dict)


def learn_offer_model(
    train: LoggedSet,
    test: LoggedSet,
    offers: OffersConfig,
    *,
    control: str = NONE,
    learners: Sequence[str] = ALL_LEARNERS,
    seed: int = 0,
    current: Current = None,
    params: Mapping[str, Any] | None = None,
    valid_share: float = 0.25,
    tune: Callable[[LoggedSet, LoggedSet], dict[str, Any]] | None = None,
    margin_paths: Sequence[str] = MARGIN_PATHS,
    path_rule: str = "lower_bound",
) -> OfferFit:
    """Pure: `train` → conversion uplift model (learner kept by Qini on a validation part of `train`), margin
    model with its shrink chosen on that validation part, then both valued on `test` (untouched by any
    choice, so the promotion gate's estimate is honest). `tune(fit, valid)` may return base-learner params
    (the Optuna step of `train_offer`); `params` are used otherwise.

    Two margin paths compete on the validation rows by paired DR (`choose_margin_path`, `path_rule`):
    "conversion_economics" (incremental conversion × known economics, shrunk; the incumbent) and
    "realised_margin_t" (a T-learner on the realised margin). Which wins depends on the shop: with small
    effects a margin's noise swamps the T-learner, with large ones the offer also moves what a converter
    spends, which only the realised margin sees (benchmarks/offer.py at effect scale 1 and 6).
    """
    unknown = sorted(set(margin_paths) - set(MARGIN_PATHS))
    if unknown or MARGIN_PATHS[0] not in margin_paths:
        raise RebuyError(f"margin paths must include {MARGIN_PATHS[0]!r} and be among {list(MARGIN_PATHS)}")
    fit, valid = split_logged(train, valid_share, seed)
    tuning: dict[str, Any] = {}
    if tune is not None:
        tuning = tune(fit, valid)
        params = tuning.get("best_params", params)
    sel = select_learner(
        (fit.X, fit.arm, fit.outcomes[[CONVERSION]]),
        (valid.X, valid.arm, valid.outcomes[[CONVERSION]]),
        control,
        CONVERSION,
        learners=learners,
        categorical=train.categorical,
        test_propensity=valid.propensity,
        seed=seed,
        params=params,
    )
    margin, values = choose_shrink(fit_margin_model(sel.model, fit, offers, seed=seed, params=params), valid)
    candidates: dict[str, UpliftModel | MarginModel] = {MARGIN_PATHS[0]: margin}
    if "realised_margin_t" in margin_paths:
        candidates["realised_margin_t"] = fit_uplift(
            fit.X,
            fit.arm,
            fit.outcomes[[MARGIN]],
            control,
            learner="t",
            encoder=sel.model.encoder,
            seed=seed,
            params=params,
        )
    path, paths = choose_margin_path(candidates, valid, MARGIN_PATHS[0], path_rule)
    kept = candidates[path]
    ev_conv = evaluate_uplift(sel.model, test, control, CONVERSION, train=train)
    ev_conv.selection = sel
    ev_marg = evaluate_uplift(kept, test, control, MARGIN, current=current, train=train)
    shrink = kept.shrink if isinstance(kept, MarginModel) else None
    model = OfferModel(
        sel.model,
        kept,
        meta={
            "learners": {CONVERSION: sel.chosen, MARGIN: kept.learner},
            "shrink": shrink,
            "margin_path": path,
            "path_rule": path_rule,
            "margin_paths_valid_dr": paths.to_dict(orient="records"),
        },
    )
    return OfferFit(model, ev_conv, ev_marg, values, tuning, paths, candidates)


@dataclass
class OfferModel:
    """What serving scores: per offer, the incremental conversion and the incremental margin (net of cost).

    The conversion uplift model (the learner that ranked conversion best) and the margin model over the same
    features of `feature_service` — a `MarginModel` built on that conversion model, or (older versions, and
    models fitted on margins directly) an `UpliftModel`; `predict` takes the service's feature matrix (NaN =
    missing), as serving reads it.
    """

    conversion: UpliftModel
    margin: UpliftModel | MarginModel
    feature_service: str = FEATURE_SERVICE
    version: str = "0"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.margin.feature_names

    @property
    def offers(self) -> list[str]:
        return list(self.margin.arms)

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        conv = self.conversion.predict(X)
        marg = self.margin.predict(X)
        return {o: (conv[o][0], marg[o][0]) for o in self.offers}

    def save(self, path: Path) -> Path:
        path = Path(path)
        self.conversion.save(path / CONVERSION)
        self.margin.save(path / MARGIN)
        doc = {"format": "rebuy-offer-v1", "feature_service": self.feature_service, "meta": self.meta}
        (path / "offer.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path, version: str = "0") -> OfferModel:
        path = Path(path)
        if not (path / "offer.json").is_file():
            raise RebuyError(f"{path}: no offer.json; not an offer model directory")
        doc = json.loads((path / "offer.json").read_text(encoding="utf-8"))
        margin_dir = path / MARGIN
        margin: UpliftModel | MarginModel = (
            MarginModel.load(margin_dir)
            if (margin_dir / "margin.json").is_file()
            else UpliftModel.load(margin_dir)
        )
        return cls(
            UpliftModel.load(path / CONVERSION),
            margin,
            doc["feature_service"],
            str(version),
            dict(doc.get("meta", {})),
        )


def optuna_tuner(cfg: Config, *, seed: int = 0) -> Callable[[LoggedSet, LoggedSet], dict[str, Any]]:
    """The training pipeline's Optuna study (`training.tuning.tune`) over the S-learner's one booster.

    The S-learner is one LightGBM model of conversion with the arm as a feature, so the shared tuning fits
    it as it is: same search space, pruning, persistent study (keyed by a digest of the rows) and budget
    (`[training.optuna]`) as the other models. The tuned objective is conversion log loss on the validation
    rows, not uplift (no per-row uplift label exists); the learner comparison and the shrink that follow
    are still chosen by Qini and doubly robust value.
    """

    def tune_on(fit: LoggedSet, valid: LoggedSet) -> dict[str, Any]:
        from training.pipeline import data_digest
        from training.specs import ModelSpec
        from training.tuning import study_storage, tune

        enc = Encoder.fit(fit.X, fit.categorical)
        arms = [NONE, *sorted(set(np.asarray(fit.arm, dtype=object).tolist()) - {NONE})]

        def mat(ds: LoggedSet) -> np.ndarray:
            code = np.array([arms.index(a) if a in arms else np.nan for a in ds.arm], dtype=float)
            return np.column_stack([enc.transform(ds.X), code])

        spec = ModelSpec(
            name="offer_conversion",
            registered_name=REGISTERED_NAME,
            label=CONVERSION,
            horizon_days=cfg.offers.attribution_days,
            feature_service=FEATURE_SERVICE,
            objective="binary",
            metric="log_loss",
            population=None,
            calibrate=False,
        )
        frame = fit.X.assign(_arm=fit.arm, _y=fit.outcomes[CONVERSION].to_numpy())
        digest = data_digest(frame, list(frame.columns))[:16]
        o = cfg.training.optuna
        res = tune(
            spec,
            mat(fit),
            fit.outcomes[CONVERSION].to_numpy(dtype=float),
            mat(valid),
            valid.outcomes[CONVERSION].to_numpy(dtype=float),
            [*enc.feature_names, "arm"],
            storage=study_storage(cfg),
            study_name=f"offer_conversion-{digest}",
            trials=o.trials,
            early_stopping=o.early_stopping_rounds,
            seed=o.seed + seed,
            show_progress=False,
        )
        params = dict(res.best_params)
        if "bagging_fraction" in params:
            params["bagging_freq"] = 1  # LightGBM ignores the fraction without a frequency
        return {"best_params": params, "summary": res.summary}

    return tune_on
