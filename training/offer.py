"""Next-best-offer glue: one path from logged randomized rows to a chosen uplift model, its policy and its value.

Rows come either from rebuy's own decision log (joined to the orders in the attribution window) or from an
imported campaign export; both become a `LoggedSet` (features, arm, logging propensity, outcomes) and go
through `learn_and_evaluate`: split off held-out rows, fit every learner on the rest, keep the better by
Qini, then value the greedy policy, every constant policy ("everyone gets X", "nobody") and any other
candidate with IPS, SNIPS and doubly robust estimates on the held-out rows. There is no second
implementation for campaigns: `training.campaign` calls the same function.

The served offer model (`rebuy train offer`, `learn_offer_model`) adds what the benchmark showed a margin
needs: the incremental margin comes from the incremental *conversion* times the catalogue's known margin
and costs (`MarginModel`), centred on each arm's measured average effect, with its spread kept only where
validation rows surely favour it; learner, tuning and shrink are chosen on a validation part of the
training rows, so the held-out rows the promotion gate values on stay untouched. A T-learner on the realised
margin competes with it on those validation rows (paired doubly robust value, `choose_margin_path`): where
offers also move what a converter spends (large effects), only the realised margin sees it.
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
from training.ope import (
    Estimate,
    arm_effects,
    dr_difference,
    dr_difference_vs_logged,
    evaluate,
    qini_curve,
    uplift_at_k,
)
from training.ope import qini as qini_auc_of
from training.policy import NONE, greedy_batch
from training.registry import experiment_id
from training.uplift import (
    ALL_LEARNERS,
    LEARNERS,
    Encoder,
    Selection,
    UpliftModel,
    fit_base_learner,
    fit_uplift,
    select_learner,
)

KS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
CONVERSION, MARGIN = "conversion", "margin"


@dataclass(frozen=True)
class LoggedSet:
    """Logged randomized rows: features, the arm each row got, its logging propensity, outcome columns."""

    X: pd.DataFrame
    arm: np.ndarray
    propensity: np.ndarray
    outcomes: pd.DataFrame
    categorical: tuple[str, ...] = ()
    # per row, which arms were allowed when it was logged (consent, caps, trigger): policies are valued
    # as the orchestrator would run them, choosing only among allowed arms (control always allowed)
    allowed: pd.DataFrame | None = None
    # per row, (customer_id, cutoff) when the rows come from the decision log: the drift reference's keys
    keys: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        n = len(self.X)
        if not (len(self.arm) == len(self.propensity) == len(self.outcomes) == n):
            raise RebuyError(
                f"logged set: {n} feature rows, {len(self.arm)} arms, {len(self.propensity)} "
                f"propensities, {len(self.outcomes)} outcome rows"
            )
        p = np.asarray(self.propensity, dtype=float)
        bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
        if bad.any():
            raise DataError(
                "propensities must lie in (0, 1]",
                column="propensity",
                row_numbers=[int(i) + 1 for i in np.flatnonzero(bad)[:5]],
                hint="log the probability with which each row's arm was chosen",
            )

    def __len__(self) -> int:
        return len(self.X)

    def take(self, idx: np.ndarray) -> LoggedSet:
        allowed = self.allowed.iloc[idx].reset_index(drop=True) if self.allowed is not None else None
        keys = self.keys.iloc[idx].reset_index(drop=True) if self.keys is not None else None
        return LoggedSet(
            self.X.iloc[idx].reset_index(drop=True),
            np.asarray(self.arm, dtype=object)[idx],
            np.asarray(self.propensity, dtype=float)[idx],
            self.outcomes.iloc[idx].reset_index(drop=True),
            self.categorical,
            allowed,
            keys,
        )


def split_logged(data: LoggedSet, test_share: float, seed: int) -> tuple[LoggedSet, LoggedSet]:
    """Random held-out split, stratified by arm so every arm is in both parts in its logged share."""
    if not 0 < test_share < 1:
        raise RebuyError(f"test share must be in (0, 1), got {test_share}")
    rng = np.random.default_rng(seed)
    arm = np.asarray(data.arm, dtype=object)
    test = np.zeros(len(arm), dtype=bool)
    for a in sorted(set(arm.tolist())):
        idx = np.flatnonzero(arm == a)
        pick = rng.permutation(idx)[: round(test_share * len(idx))]
        test[pick] = True
    return data.take(np.flatnonzero(~test)), data.take(np.flatnonzero(test))


def arm_costs(arms: Sequence[str], offers: OffersConfig | None) -> dict[str, float]:
    """Fixed cost per send of each arm from the offer catalogue; arms it does not know (and `none`) cost 0."""
    cat = offers.catalogue if offers is not None else {}
    return {a: float(cat[a].cost) if a in cat else 0.0 for a in arms}


def net_of_cost(y: np.ndarray, arm: np.ndarray, costs: Mapping[str, float]) -> np.ndarray:
    """Outcome minus the cost of the arm the row got: what a policy is worth, in the outcome's unit."""
    c = np.array([costs.get(a, 0.0) for a in np.asarray(arm, dtype=object)], dtype=float)
    return np.asarray(y, dtype=float) - c


def realised_margin(
    revenue: np.ndarray, orders: np.ndarray, arm: np.ndarray, offers: OffersConfig
) -> np.ndarray:
    """Margin a row earned: revenue × (margin − redemption share) − shipping paid − the send's fixed cost.

    Redemption costs apply only to orders under the offer (a coupon costs 10% of what it is redeemed on);
    free shipping costs `shipping_cost` per redeemed order.
    """
    arm = np.asarray(arm, dtype=object)
    cat = offers.catalogue
    share = np.array([cat[a].redemption_share if a in cat else 0.0 for a in arm])
    cost = np.array([cat[a].cost if a in cat else 0.0 for a in arm])
    ship = np.where(arm == "free_shipping", offers.shipping_cost, 0.0)
    revenue = np.asarray(revenue, dtype=float)
    return revenue * (offers.margin - share) - ship * np.asarray(orders, dtype=float) - cost


# --- learn + evaluate --------------------------------------------------------------------------------------


@dataclass
class OutcomeEvaluation:
    """Everything the reports need about one outcome: effects, learner comparison, ranking and policy values."""

    outcome: str
    control: str
    arms: list[str]
    costs: dict[str, float]
    effects: pd.DataFrame  # per arm vs control on the raw outcome, all rows
    selection: Selection | None
    qini: dict[str, float]  # per arm, held-out, chosen learner
    uplift_at_k: pd.DataFrame  # arm, k, uplift
    curves: dict[str, pd.DataFrame]  # per arm Qini / cumulative uplift curve
    policies: pd.DataFrame  # policy, method, value, se, low, high, n
    advantage: Estimate  # DR of personalised − best constant, paired
    gains: dict[str, Estimate]  # DR of everyone-gets-arm − nobody, paired, per arm
    recommendation: dict[str, Any] = field(default_factory=dict)
    vs_current: Estimate | None = None  # DR of personalised − current policy, paired (promotion gate)
    vs_nothing: Estimate | None = None  # DR of personalised − nobody, paired (promotion gate: it must pay)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "control": self.control,
            "arms": self.arms,
            "costs": self.costs,
            "arm_effects": self.effects.to_dict(orient="records"),
            "learners": self.selection.scores.to_dict(orient="records") if self.selection else [],
            "chosen_learner": self.selection.chosen if self.selection else None,
            "qini": self.qini,
            "uplift_at_k": self.uplift_at_k.to_dict(orient="records"),
            "policies": self.policies.to_dict(orient="records"),
            "personalised_minus_best_constant": self.advantage.to_dict(),
            "arm_for_everyone_minus_nothing": {a: e.to_dict() for a, e in self.gains.items()},
            "recommendation": self.recommendation,
            "personalised_minus_current": self.vs_current.to_dict() if self.vs_current else None,
            "personalised_minus_nothing": self.vs_nothing.to_dict() if self.vs_nothing else None,
        }


def _policy_rows(name: str, ests: Mapping[str, Estimate]) -> list[dict[str, Any]]:
    return [{"policy": name, **e.to_dict()} for e in ests.values()]


def recommend(
    advantage: Estimate, best_constant: str, arm_gain: Estimate | None, control: str
) -> dict[str, Any]:
    """Personalise only if its lower bound beats the best constant policy; else send everyone the best arm
    if its lower bound beats sending nothing; else send nothing.

    "Its lower bound" is the lower 95% bound of the paired doubly robust difference (personalised − best
    constant, best arm − nobody) on the same held-out rows: it bounds how much better the policy is, and
    is much tighter than comparing two separate value intervals, whose noise (the outcome's own spread) is
    shared by both policies.
    """
    if advantage.low > 0:
        return {
            "action": "personalise",
            "arm": None,
            "reason": (
                f"the personalised policy beats the best constant policy (everyone:{best_constant}) by "
                f"{advantage.value:.4g} per customer, 95% lower bound {advantage.low:.4g} > 0"
            ),
        }
    if best_constant != control and arm_gain is not None and arm_gain.low > 0:
        return {
            "action": "best_arm",
            "arm": best_constant,
            "reason": (
                f"personalising does not surely beat everyone:{best_constant} (lower bound {advantage.low:.4g}); "
                f"{best_constant} for everyone beats sending nothing by {arm_gain.value:.4g}, lower bound "
                f"{arm_gain.low:.4g} > 0"
            ),
        }
    return {
        "action": "nothing",
        "arm": None,
        "reason": (
            "neither the personalised policy nor any arm for everyone surely beats sending nothing "
            f"(best constant: {best_constant}; personalised advantage lower bound {advantage.low:.4g}"
            + (f"; best arm vs nothing lower bound {arm_gain.low:.4g}" if arm_gain is not None else "")
            + ")"
        ),
    }


Current = Callable[["LoggedSet"], np.ndarray] | str | None


def learn_and_evaluate(
    train: LoggedSet,
    test: LoggedSet,
    control: str,
    outcome: str,
    *,
    costs: Mapping[str, float] | None = None,
    learners: Sequence[str] = LEARNERS,
    seed: int = 0,
    ks: Sequence[float] = KS,
    current: Current = None,
    min_rows: int = 30,
) -> OutcomeEvaluation:
    """Fit the learners on `train` for `outcome` net of arm costs, keep the better by held-out Qini, then
    `evaluate_uplift` on `test`."""
    costs = {a: float((costs or {}).get(a, 0.0)) for a in _actions(train, test, control)}

    def net(ds: LoggedSet) -> pd.DataFrame:
        return pd.DataFrame({outcome: net_of_cost(ds.outcomes[outcome].to_numpy(dtype=float), ds.arm, costs)})

    sel = select_learner(
        (train.X, train.arm, net(train)),
        (test.X, test.arm, net(test)),
        control,
        outcome,
        learners=learners,
        categorical=train.categorical,
        test_propensity=test.propensity,
        seed=seed,
        min_rows=min_rows,
    )
    ev = evaluate_uplift(sel.model, test, control, outcome, costs=costs, ks=ks, current=current, train=train)
    ev.selection = sel
    return ev


def _actions(train: LoggedSet | None, test: LoggedSet, control: str) -> list[str]:
    arms = set(np.asarray(test.arm, dtype=object).tolist())
    if train is not None:
        arms |= set(np.asarray(train.arm, dtype=object).tolist())
    if control not in arms:
        raise DataError(f"no rows in the control arm {control!r}; arms: {sorted(arms)}", column="arm")
    return [control, *sorted(arms - {control})]


def evaluate_uplift(
    model: UpliftModel | MarginModel,
    test: LoggedSet,
    control: str,
    outcome: str,
    *,
    costs: Mapping[str, float] | None = None,
    ks: Sequence[float] = KS,
    current: Current = None,
    train: LoggedSet | None = None,
) -> OutcomeEvaluation:
    """Rank and value a fitted model on held-out logged rows.

    Qini and uplift at k per arm; IPS/SNIPS/DR of the personalised (greedy) policy, every constant policy
    and `current` ("logged" = the logging policy itself, or a function of the rows returning actions);
    paired DR differences: personalised − best constant, each arm for everyone − nobody, personalised −
    current. Every policy is restricted to the arms allowed on each row, falling back to control.
    """
    actions = _actions(train, test, control)
    arms = actions[1:]
    costs = {a: float((costs or {}).get(a, 0.0)) for a in actions}
    y = net_of_cost(test.outcomes[outcome].to_numpy(dtype=float), test.arm, costs)
    M = model.encoder.transform(test.X)
    eff = model.effects_frame(M, outcome)
    t_arm = np.asarray(test.arm, dtype=object)
    w = 1.0 / np.asarray(test.propensity, dtype=float)

    qini, curves, at_k = {}, {}, []
    for a in arms:
        m = (t_arm == a) | (t_arm == control)
        if a not in eff or not m.any():
            continue
        e = eff[a].to_numpy()[m]
        qini[a] = qini_auc_of(e, y[m], t_arm[m] == a, w[m])
        curves[a] = qini_curve(e, y[m], t_arm[m] == a, w[m])
        for k in ks:
            at_k.append({"arm": a, "k": k, "uplift": uplift_at_k(e, y[m], t_arm[m] == a, k, w[m])})

    action_idx = np.array([actions.index(a) for a in t_arm])
    known = [a if a in model.arms or a == model.control else None for a in actions]
    q_hat = np.column_stack(
        [model.levels_matrix(M, outcome, [a])[:, 0] if a is not None else np.zeros(len(test)) for a in known]
    )
    pers = personalised_actions(model, M, outcome, test.allowed)
    pi_pers = one_hot(pers, actions)
    p = test.propensity
    rows = _policy_rows("personalised", evaluate(pi_pers, action_idx, p, y, q_hat))
    const_pi = {}
    for a in actions:
        const_pi[a] = one_hot(restrict(np.full(len(test), a, dtype=object), test.allowed, control), actions)
        rows += _policy_rows(f"everyone:{a}", evaluate(const_pi[a], action_idx, p, y, q_hat))
    vs_current = None
    if isinstance(current, str) and current == "logged":
        rows += _policy_rows("current", {"on_policy": _on_policy(y)})
        vs_current = dr_difference_vs_logged(pi_pers, action_idx, p, y, q_hat)
    elif callable(current):
        pi_cur = one_hot(restrict(current(test), test.allowed, control), actions)
        rows += _policy_rows("current", evaluate(pi_cur, action_idx, p, y, q_hat))
        vs_current = dr_difference(pi_pers, pi_cur, action_idx, p, y, q_hat)
    policies = pd.DataFrame(rows)
    dr_vals = policies[(policies["method"] == "dr") & policies["policy"].str.startswith("everyone:")]
    best_const = str(dr_vals.set_index("policy")["value"].idxmax()).split(":", 1)[1]
    advantage = dr_difference(pi_pers, const_pi[best_const], action_idx, p, y, q_hat)
    gains = {a: dr_difference(const_pi[a], const_pi[control], action_idx, p, y, q_hat) for a in arms}
    best_arm = max(arms, key=lambda a: gains[a].value) if arms else control
    both = [test] if train is None else [train, test]
    effects = arm_effects(
        np.concatenate([d.outcomes[outcome].to_numpy(float) for d in both]),
        np.concatenate([d.arm for d in both]),
        control,
        np.concatenate([d.propensity for d in both]),
    )
    ev = OutcomeEvaluation(
        outcome,
        control,
        arms,
        costs,
        effects,
        None,
        qini,
        pd.DataFrame(at_k),
        curves,
        policies,
        advantage,
        gains,
        vs_current=vs_current,
        vs_nothing=dr_difference(pi_pers, const_pi[control], action_idx, p, y, q_hat),
    )
    ev.recommendation = recommend(advantage, best_const, gains.get(best_arm), control)
    return ev


def _on_policy(y: np.ndarray) -> Estimate:
    from training.ope import Z95

    se = float(np.std(y, ddof=1) / np.sqrt(len(y))) if len(y) > 1 else float("inf")
    v = float(np.mean(y))
    return Estimate("on_policy", v, se, v - Z95 * se, v + Z95 * se, len(y))


def personalised_actions(
    model: UpliftModel | MarginModel, M: np.ndarray, target: str, allowed: pd.DataFrame | None = None
) -> np.ndarray:
    """The greedy policy per row: the allowed arm with the highest positive estimated effect, else control.

    Arms are prefixed before `greedy_batch` so an arm literally called "none" is not mistaken for "no offer".
    """
    eff = model.effects_frame(M, target)
    mask = None
    if allowed is not None:
        mask = pd.DataFrame(
            {
                f"arm:{a}": allowed[a].to_numpy(bool) if a in allowed else np.zeros(len(eff), bool)
                for a in eff.columns
            }
        )
    g = greedy_batch(eff.rename(columns=lambda c: f"arm:{c}"), mask)
    return np.array([model.control if a == NONE else a.split(":", 1)[1] for a in g], dtype=object)


def restrict(chosen: np.ndarray, allowed: pd.DataFrame | None, control: str) -> np.ndarray:
    """Replace actions that were not allowed on a row by the control arm (what the orchestrator would send)."""
    chosen = np.asarray(chosen, dtype=object).copy()
    if allowed is None:
        return chosen
    for a in set(chosen.tolist()) - {control}:
        ok = allowed[a].to_numpy(bool) if a in allowed else np.zeros(len(chosen), bool)
        chosen[(chosen == a) & ~ok] = control
    return chosen


def one_hot(chosen: np.ndarray, actions: Sequence[str]) -> np.ndarray:
    """Deterministic policy (one action per row) as a probability matrix over `actions`."""
    chosen = np.asarray(chosen, dtype=object)
    unknown = set(chosen.tolist()) - set(actions)
    if unknown:
        raise RebuyError(
            f"policy chose actions {sorted(unknown)} that are not among the logged ones {list(actions)}"
        )
    return (chosen[:, None] == np.array(actions, dtype=object)[None, :]).astype(float)


# --- incremental margin from incremental conversion ------------------------------------------------------

REVENUE, N_ORDERS = "revenue", "n_orders"
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
    actions = [model.control, *model.arms]
    arm = np.asarray(valid.arm, dtype=object)
    v = valid.take(np.flatnonzero(np.isin(arm, actions)))
    M = model.encoder.transform(v.X)
    a_idx = np.array([actions.index(a) for a in np.asarray(v.arm, dtype=object)])
    y = v.outcomes[MARGIN].to_numpy(dtype=float)
    q_hat = model.levels_matrix(M, MARGIN, actions)
    grid = sorted({0.0, *map(float, grid)})
    pis = {
        s: one_hot(personalised_actions(model.with_shrink(s), M, MARGIN, v.allowed), actions) for s in grid
    }
    values = {s: float(dr_difference(pis[s], pis[0.0], a_idx, v.propensity, y, q_hat).value) for s in grid}
    lows = {s: float(dr_difference(pis[s], pis[0.0], a_idx, v.propensity, y, q_hat).low) for s in grid}
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
    actions = [base.control, *base.arms]
    arm = np.asarray(valid.arm, dtype=object)
    v = valid.take(np.flatnonzero(np.isin(arm, actions)))
    M = base.encoder.transform(v.X)
    a_idx = np.array([actions.index(a) for a in np.asarray(v.arm, dtype=object)])
    y = v.outcomes[MARGIN].to_numpy(dtype=float)
    q_hat = base.levels_matrix(M, MARGIN, actions)

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


# --- the served offer model ------------------------------------------------------------------------------

REGISTERED_NAME = "rebuy-offer"
FEATURE_SERVICE = "offer_v1"


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


# --- decision log → logged set ---------------------------------------------------------------------------


def decision_outcomes(decisions: pd.DataFrame, orders: pd.DataFrame, offers: OffersConfig) -> pd.DataFrame:
    """Per decision: converted / revenue / orders in (decided_at, decided_at + attribution_days] and the
    realised margin net of the offer's costs; only randomized rows (a logged distribution with more than
    one action), since a forced action (holdout, control group) says nothing about the alternatives.

    Also `cutoff`: midnight UTC before the decision, the point-in-time for its features.
    """
    need = {"decision_id", "customer_id", "decided_at", "offer", "propensity", "distribution"}
    missing = sorted(need - set(decisions.columns))
    if missing:
        raise DataError(f"decision log lacks columns {missing}", hint="read it with the decision log adapter")
    d = decisions.copy()
    d["decided_at"] = pd.to_datetime(d["decided_at"], utc=True)
    support = d["distribution"].map(lambda dist: sorted(k for k, v in (dist or {}).items() if v > 0))
    d = d[support.map(len) > 1].copy()
    d["support"] = support[d.index]
    end = d["decided_at"] + pd.Timedelta(days=offers.attribution_days)
    o = orders[["customer_id", "ordered_at", "amount"]].copy()
    o["net"] = o["amount"] - (orders["returned_amount"].fillna(0.0) if "returned_amount" in orders else 0.0)
    j = (
        d[["decision_id", "customer_id", "decided_at"]]
        .assign(end=end)
        .merge(o, on="customer_id", how="inner")
    )
    j = j[(j["ordered_at"] > j["decided_at"]) & (j["ordered_at"] <= j["end"])]
    agg = j.groupby("decision_id").agg(revenue=("net", "sum"), n_orders=("net", "size"))
    d = d.merge(agg, left_on="decision_id", right_index=True, how="left")
    d[["revenue", "n_orders"]] = d[["revenue", "n_orders"]].fillna(0.0)
    d[CONVERSION] = (d["n_orders"] > 0).astype(float)
    d[MARGIN] = realised_margin(
        d["revenue"].to_numpy(), d["n_orders"].to_numpy(), d["offer"].to_numpy(), offers
    )
    d["cutoff"] = d["decided_at"].dt.floor("D")
    return d.reset_index(drop=True)


def logged_from_decisions(
    rows: pd.DataFrame, features: pd.DataFrame, feature_names: Sequence[str], arms: Sequence[str]
) -> LoggedSet:
    """Join `decision_outcomes` rows to features at (customer_id, cutoff); allowed arms from each row's support."""
    j = rows.merge(
        features[["customer_id", "cutoff", *feature_names]],
        on=["customer_id", "cutoff"],
        how="left",
        validate="m:1",
    )
    allowed = pd.DataFrame({a: j["support"].map(lambda s, a=a: a in s).to_numpy(bool) for a in arms})
    return LoggedSet(
        j[list(feature_names)].astype(float),
        j["offer"].to_numpy(dtype=object),
        j["propensity"].to_numpy(dtype=float),
        j[[CONVERSION, MARGIN, REVENUE, N_ORDERS]].astype(float),
        (),
        allowed,
        j[["customer_id", "cutoff"]].reset_index(drop=True),
    )


def hash_split(ids: Sequence[str], test_share: float) -> np.ndarray:
    """True for held-out rows, by a stable hash of the decision id: the same decision is always held out,
    whichever run or command (train offer, evaluate-policy) asks, and new decisions split the same way."""
    import hashlib

    cut = int(test_share * 2**32)
    return np.array([int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:4], "big") < cut for i in ids])


# --- adapters: decision log, features, MLflow ------------------------------------------------------------


def read_decision_log(url: str) -> pd.DataFrame:
    """The `decisions` table of the decision log (SQLAlchemy URL), JSON distribution parsed, times UTC.

    Read with SQL rather than through `pipelines` (training may not import a later stage); the table is
    the decision-log contract of DESIGN.md.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        if not sa.inspect(engine).has_table("decisions"):
            raise RebuyError(
                f"the decision log {url} has no decisions yet; run `rebuy run` / `rebuy loop` first, "
                "or learn from an imported campaign with `rebuy report campaign`"
            )
        with engine.connect() as conn:
            df = pd.read_sql(
                sa.text(
                    'SELECT decision_id, customer_id, decided_at, offer, "group", propensity, '
                    "distribution FROM decisions"
                ),
                conn,
            )
    finally:
        engine.dispose()
    df["decided_at"] = pd.to_datetime(df["decided_at"], utc=True)
    df["distribution"] = [json.loads(v) if isinstance(v, str) else v for v in df["distribution"]]
    return df


@dataclass
class OfferData:
    """The decision log turned into train / held-out logged sets (held out by a hash of the decision id)."""

    train: LoggedSet
    test: LoggedSet
    n_decisions: int


def offer_data(cfg: Config, as_of: pd.Timestamp, test_share: float = 0.3) -> OfferData:
    """Decisions whose attribution window is over by `as_of`, their outcomes, and `offer_v1` features."""
    from features.training_set import build_training_set, feature_names
    from rebuy.ingest import read_canonical

    tables = read_canonical(cfg.paths.data_dir)
    decisions = read_decision_log(cfg.decision_log_url)
    matured = decisions["decided_at"] + pd.Timedelta(days=cfg.offers.attribution_days) <= as_of
    rows = decision_outcomes(decisions[matured], tables["orders"], cfg.offers)
    if len(rows) < 100:
        raise RebuyError(
            f"only {len(rows)} randomized decisions with a finished {cfg.offers.attribution_days}-day "
            f"attribution window by {as_of}; the offer model needs logged exploration to learn from"
        )
    names = feature_names(cfg, FEATURE_SERVICE)
    cutoffs = sorted(rows["cutoff"].unique())
    feats = build_training_set(cfg, FEATURE_SERVICE, [pd.Timestamp(c) for c in cutoffs], tables, as_of=as_of)
    arms = [o for o in cfg.offers.catalogue if o != NONE]
    logged = logged_from_decisions(rows, feats, names, arms)
    held = hash_split(rows["decision_id"].tolist(), test_share)
    return OfferData(logged.take(np.flatnonzero(~held)), logged.take(np.flatnonzero(held)), len(rows))


def load_offer_version(cfg: Config, version: str) -> OfferModel:
    """One registered offer model version, downloaded once into <mlflow_dir>/bundles/rebuy-offer/<version>."""
    from training.registry import download_version

    return OfferModel.load(download_version(cfg, REGISTERED_NAME, str(version), "offer.json"), str(version))


def load_offer_champion(cfg: Config) -> OfferModel | None:
    """Serving's hook: the @champion offer model, or None when none has been promoted yet."""
    from training.registry import CHAMPION, alias_version

    version = alias_version(cfg, REGISTERED_NAME, CHAMPION)
    return load_offer_version(cfg, version) if version is not None else None


def promotion_decision(ev: OutcomeEvaluation) -> tuple[bool, str]:
    """Promote only if the candidate's DR lower bound beats the current policy AND sending nothing (paired,
    on held-out rows).

    Beating the current policy alone is not enough: with no champion yet the current policy is the logging
    policy of the randomized campaigns, random offers, which lose money here (benchmarks/offer.md), so a
    model that sends nearly everyone a slightly-less-bad offer passed that bar and then lowered repurchase
    in the closed loop (benchmarks/loop.md, diagnosis). Whatever a promoted model sends must surely pay.
    """
    from training.ope import should_promote

    if ev.vs_current is None or ev.vs_nothing is None:
        raise RebuyError("promotion needs the candidate valued against the current policy and against nobody")
    d, z = ev.vs_current, ev.vs_nothing
    beats_current, beats_nothing = should_promote(d), should_promote(z)
    ok = beats_current and beats_nothing
    verdict = (
        "promote"
        if ok
        else "keep the current policy"
        + ("" if beats_current else " (does not surely beat it)")
        + ("" if beats_nothing else " (does not surely beat sending nothing)")
    )
    return ok, (
        f"{verdict}: candidate − current = {d.value:.4g} per decision, 95% CI [{d.low:.4g}, {d.high:.4g}]; "
        f"candidate − nothing = {z.value:.4g}, 95% CI [{z.low:.4g}, {z.high:.4g}] on {d.n} held-out decisions"
    )


def _current_policy(cfg: Config, exclude_version: str | None = None) -> tuple[Current, str | None]:
    """The champion's greedy policy, or the logging policy when there is no champion."""
    from training.registry import CHAMPION, alias_version

    version = alias_version(cfg, REGISTERED_NAME, CHAMPION)
    if version is None or version == exclude_version:
        return "logged", version
    champ = load_offer_version(cfg, version)

    def act(ds: LoggedSet) -> np.ndarray:
        return personalised_actions(champ.margin, champ.margin.encoder.transform(ds.X), MARGIN, ds.allowed)

    return act, version


def _log_evaluation(evs: Mapping[str, OutcomeEvaluation], tmp: Path) -> None:
    """Qini / uplift curves (PNG + CSV) and the evaluation JSON as artifacts of the active MLflow run."""
    import mlflow

    from training.campaign import plot_outcome

    for name, ev in evs.items():
        (tmp / f"evaluation_{name}.json").write_text(
            json.dumps(ev.to_json(), indent=2, default=float), "utf-8"
        )
        mlflow.log_artifact(str(tmp / f"evaluation_{name}.json"), artifact_path="evaluation")
        for a, c in ev.curves.items():
            c.to_csv(tmp / f"curve_{name}_{a}.csv", index=False)
            mlflow.log_artifact(str(tmp / f"curve_{name}_{a}.csv"), artifact_path="curves")
        import base64

        for kind, png in plot_outcome(ev).items():
            (tmp / f"{name}_{kind}.png").write_bytes(base64.b64decode(png))
            mlflow.log_artifact(str(tmp / f"{name}_{kind}.png"), artifact_path="plots")
        for a, q in ev.qini.items():
            if np.isfinite(q):
                mlflow.log_metric(f"qini.{name}.{a}", float(q))
        for _, r in ev.policies.iterrows():
            mlflow.log_metric(f"{r['method']}.{name}.{r['policy'].replace(':', '.')}", float(r["value"]))


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


def reference_sample(data: LoggedSet, n: int, seed: int = 0) -> pd.DataFrame | None:
    """KEYS + feature columns of a sample of the training rows: the drift reference other models log too."""
    if data.keys is None:
        return None
    ref = pd.concat([data.keys.reset_index(drop=True), data.X.reset_index(drop=True)], axis=1)
    return ref.sample(min(len(ref), n), random_state=seed).reset_index(drop=True)


def train_offer(cfg: Config, as_of: pd.Timestamp, *, seed: int = 0, tune: bool = True) -> dict[str, Any]:
    """`rebuy train offer`: learn from the decision log, register `rebuy-offer` (@challenger), and make it
    @champion only if its DR lower bound beats the current policy on held-out decisions.

    `tune`: base-learner params from the shared Optuna study (`optuna_tuner`); off, the fixed BASE_PARAMS.
    """
    import tempfile

    import mlflow
    from rich.progress import Progress

    from training.registry import CHALLENGER, client, record_alias_move

    with Progress(transient=True) as bar:
        task = bar.add_task("reading decisions, orders and offer_v1 features", total=2)
        data = offer_data(cfg, as_of)
        current, champ_version = _current_policy(cfg)
        bar.update(task, advance=1, description="tuning, learning conversion and margin, valuing policies")
        fitted = learn_offer_model(
            data.train,
            data.test,
            cfg.offers,
            seed=seed,
            current=current,
            tune=optuna_tuner(cfg, seed=seed) if tune else None,
        )
        bar.update(task, advance=1)
    model, conv, marg = fitted.model, fitted.conversion, fitted.margin
    model.meta.update({"as_of": str(as_of), "decisions": data.n_decisions})
    promoted, reason = promotion_decision(marg)
    cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_registry_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-offer"))
    c = client(cfg)
    with tempfile.TemporaryDirectory() as tmp_s, mlflow.start_run(run_name="offer") as run:
        tmp = Path(tmp_s)
        mlflow.log_params(
            {
                "feature_service": FEATURE_SERVICE,
                "decisions": data.n_decisions,
                "as_of": str(as_of),
                "learner_conversion": model.meta["learners"][CONVERSION],
                "learner_margin": model.meta["learners"][MARGIN],
                "shrink": model.meta["shrink"] if model.meta["shrink"] is not None else "n/a",
                "margin_path": model.meta["margin_path"],
                "margin_path_rule": model.meta["path_rule"],
                "tuned": bool(fitted.tuning),
                **{f"base_{k}": v for k, v in (fitted.tuning.get("best_params") or {}).items()},
            }
        )
        for s, v in fitted.shrink_values.items():
            mlflow.log_metric(f"valid_dr_margin_shrink_{s:g}", v)
        # the margin paths' paired DR comparison on the validation rows (candidate − incumbent)
        for _, r in fitted.paths.iterrows():
            for k in ("value", "low", "high", "dr"):
                mlflow.log_metric(f"valid_dr_path.{r['path']}.{k}", float(r[k]))
        (tmp / "margin_paths.json").write_text(
            fitted.paths.to_json(orient="records", indent=2), encoding="utf-8"
        )
        mlflow.log_artifact(str(tmp / "margin_paths.json"), artifact_path="info")
        _log_evaluation({CONVERSION: conv, MARGIN: marg}, tmp)
        if fitted.tuning:
            (tmp / "optuna_study.json").write_text(json.dumps(fitted.tuning, indent=2, default=str), "utf-8")
            mlflow.log_artifact(str(tmp / "optuna_study.json"), artifact_path="info")
        ref = reference_sample(data.train, cfg.drift.reference_sample, seed)
        if ref is not None:
            ref.to_parquet(tmp / "reference.parquet", index=False)
            mlflow.log_artifact(str(tmp / "reference.parquet"), artifact_path="reference")
        model.save(tmp / "offer_model")
        mlflow.log_artifacts(str(tmp / "offer_model"), artifact_path="offer_model")
        mlflow.set_tags({"gate_promoted": str(promoted), "gate_reason": reason})
        run_id = run.info.run_id
        source = f"{run.info.artifact_uri}/offer_model"
    try:
        c.get_registered_model(REGISTERED_NAME)
    except Exception:  # MlflowException: not registered yet
        c.create_registered_model(REGISTERED_NAME)
    version = str(c.create_model_version(REGISTERED_NAME, source, run_id=run_id).version)
    c.set_registered_model_alias(REGISTERED_NAME, CHALLENGER, version)
    c.set_model_version_tag(REGISTERED_NAME, version, "gate_reason", reason)
    if promoted:
        record_alias_move(cfg, REGISTERED_NAME, version, reason=f"gate: {reason}", actor="training")
    return {
        "version": version,
        "promoted": promoted,
        "reason": reason,
        "run_id": run_id,
        "previous_champion": champ_version,
        "recommendation": marg.recommendation,
        "learners": {**model.meta["learners"], "shrink": model.meta["shrink"]},
        "margin_path": model.meta["margin_path"],
    }


def evaluate_policy(
    cfg: Config, as_of: pd.Timestamp, version: str | None = None, *, promote: bool = True
) -> dict[str, Any]:
    """`rebuy evaluate-policy`: uplift metrics and IPS/SNIPS/DR values of a candidate offer model (default
    @challenger) against the current policy and every constant policy on held-out decisions; promotes it
    to @champion only if its DR lower bound beats the current policy. Curves and values go to MLflow."""
    import tempfile

    import mlflow

    from training.registry import CHALLENGER, alias_version, record_alias_move

    version = version or alias_version(cfg, REGISTERED_NAME, CHALLENGER)
    if version is None:
        raise RebuyError(f"no {REGISTERED_NAME} candidate to evaluate; run `rebuy train offer` first")
    cand = load_offer_version(cfg, version)
    data = offer_data(cfg, as_of)
    current, champ_version = _current_policy(cfg, exclude_version=version)
    conv = evaluate_uplift(cand.conversion, data.test, NONE, CONVERSION)
    marg = evaluate_uplift(cand.margin, data.test, NONE, MARGIN, current=current)
    ok, reason = promotion_decision(marg)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-offer"))
    with (
        tempfile.TemporaryDirectory() as tmp_s,
        mlflow.start_run(run_name=f"evaluate-policy v{version}") as run,
    ):
        mlflow.log_params(
            {
                "candidate_version": version,
                "current": champ_version or "logging policy",
                "as_of": str(as_of),
                "promote": ok,
            }
        )
        _log_evaluation({CONVERSION: conv, MARGIN: marg}, Path(tmp_s))
        run_id = run.info.run_id
    if ok and promote and champ_version != version:
        record_alias_move(
            cfg, REGISTERED_NAME, version, reason=f"evaluate-policy: {reason}", actor="evaluate-policy"
        )
    return {
        "version": version,
        "current": champ_version,
        "promoted": bool(ok and promote),
        "reason": reason,
        "run_id": run_id,
        "policies": marg.policies,
        "qini": marg.qini,
        "uplift_at_k": marg.uplift_at_k,
    }
