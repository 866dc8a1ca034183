"""Next-best-offer glue: one path from logged randomized rows to a chosen uplift model, its policy and its value.

Rows come either from rebuy's own decision log (joined to the orders in the attribution window) or from an
imported campaign export; both become a `LoggedSet` (features, arm, logging propensity, outcomes) and go
through `learn_and_evaluate`: split off held-out rows, fit every learner on the rest, keep the better by
Qini, then value the greedy policy, every constant policy ("everyone gets X", "nobody") and any other
candidate with IPS, SNIPS and doubly robust estimates on the held-out rows. There is no second
implementation for campaigns: `training.campaign` calls the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import OffersConfig
from rebuy.errors import DataError, RebuyError
from training.ope import Estimate, arm_effects, dr_difference, evaluate, qini_curve, uplift_at_k
from training.ope import qini as qini_auc_of
from training.policy import NONE, greedy_batch
from training.uplift import LEARNERS, Selection, UpliftModel, select_learner

KS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class LoggedSet:
    """Logged randomized rows: features, the arm each row got, its logging propensity, outcome columns."""

    X: pd.DataFrame
    arm: np.ndarray
    propensity: np.ndarray
    outcomes: pd.DataFrame
    categorical: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.X)
        if not (len(self.arm) == len(self.propensity) == len(self.outcomes) == n):
            raise RebuyError(f"logged set: {n} feature rows, {len(self.arm)} arms, {len(self.propensity)} "
                             f"propensities, {len(self.outcomes)} outcome rows")
        p = np.asarray(self.propensity, dtype=float)
        bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
        if bad.any():
            raise DataError("propensities must lie in (0, 1]", column="propensity",
                            row_numbers=[int(i) + 1 for i in np.flatnonzero(bad)[:5]],
                            hint="log the probability with which each row's arm was chosen")

    def __len__(self) -> int:
        return len(self.X)

    def take(self, idx: np.ndarray) -> LoggedSet:
        return LoggedSet(self.X.iloc[idx].reset_index(drop=True), np.asarray(self.arm, dtype=object)[idx],
                         np.asarray(self.propensity, dtype=float)[idx],
                         self.outcomes.iloc[idx].reset_index(drop=True), self.categorical)


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


def realised_margin(revenue: np.ndarray, orders: np.ndarray, arm: np.ndarray, offers: OffersConfig) -> np.ndarray:
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
    effects: pd.DataFrame                 # per arm vs control on the raw outcome, all rows
    selection: Selection
    qini: dict[str, float]                # per arm, held-out, chosen learner
    uplift_at_k: pd.DataFrame             # arm, k, uplift
    curves: dict[str, pd.DataFrame]       # per arm Qini / cumulative uplift curve
    policies: pd.DataFrame                # policy, method, value, se, low, high, n
    advantage: Estimate                   # DR of personalised − best constant, paired
    gains: dict[str, Estimate]            # DR of everyone-gets-arm − nobody, paired, per arm
    recommendation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "control": self.control, "arms": self.arms, "costs": self.costs,
            "arm_effects": self.effects.to_dict(orient="records"),
            "learners": self.selection.scores.to_dict(orient="records"), "chosen_learner": self.selection.chosen,
            "qini": self.qini, "uplift_at_k": self.uplift_at_k.to_dict(orient="records"),
            "policies": self.policies.to_dict(orient="records"),
            "personalised_minus_best_constant": self.advantage.to_dict(),
            "arm_for_everyone_minus_nothing": {a: e.to_dict() for a, e in self.gains.items()},
            "recommendation": self.recommendation,
        }


def _policy_rows(name: str, ests: Mapping[str, Estimate]) -> list[dict[str, Any]]:
    return [{"policy": name, **e.to_dict()} for e in ests.values()]


def recommend(advantage: Estimate, best_constant: str, arm_gain: Estimate | None, control: str) -> dict[str, Any]:
    """Personalise only if its lower bound beats the best constant policy; else send everyone the best arm
    if its lower bound beats sending nothing; else send nothing.

    "Its lower bound" is the lower 95% bound of the paired doubly robust difference (personalised − best
    constant, best arm − nobody) on the same held-out rows: it bounds how much better the policy is, and
    is much tighter than comparing two separate value intervals, whose noise (the outcome's own spread) is
    shared by both policies.
    """
    if advantage.low > 0:
        return {"action": "personalise", "arm": None, "reason": (
            f"the personalised policy beats the best constant policy (everyone:{best_constant}) by "
            f"{advantage.value:.4g} per customer, 95% lower bound {advantage.low:.4g} > 0")}
    if best_constant != control and arm_gain is not None and arm_gain.low > 0:
        return {"action": "best_arm", "arm": best_constant, "reason": (
            f"personalising does not surely beat everyone:{best_constant} (lower bound {advantage.low:.4g}); "
            f"{best_constant} for everyone beats sending nothing by {arm_gain.value:.4g}, lower bound "
            f"{arm_gain.low:.4g} > 0")}
    return {"action": "nothing", "arm": None, "reason": (
        "neither the personalised policy nor any arm for everyone surely beats sending nothing "
        f"(best constant: {best_constant}; personalised advantage lower bound {advantage.low:.4g}"
        + (f"; best arm vs nothing lower bound {arm_gain.low:.4g}" if arm_gain is not None else "") + ")")}


def learn_and_evaluate(
    train: LoggedSet, test: LoggedSet, control: str, outcome: str, *, costs: Mapping[str, float] | None = None,
    learners: Sequence[str] = LEARNERS, seed: int = 0, ks: Sequence[float] = KS,
    extra_policies: Mapping[str, Callable[[pd.DataFrame], np.ndarray]] | None = None, min_rows: int = 30,
) -> OutcomeEvaluation:
    """Fit the learners on `train` for `outcome` net of arm costs, keep the better by held-out Qini, value
    the policies on `test`.

    `extra_policies` maps a name to a function of the held-out feature frame returning the action per
    row (e.g. the current champion's greedy choice), valued next to the personalised and constant ones.
    """
    arms_all = sorted(set(np.asarray(train.arm, dtype=object).tolist()) | set(np.asarray(test.arm).tolist()))
    if control not in arms_all:
        raise DataError(f"no rows in the control arm {control!r}; arms: {arms_all}", column="arm")
    arms = [a for a in arms_all if a != control]
    actions = [control, *arms]
    costs = {a: float((costs or {}).get(a, 0.0)) for a in actions}

    def net(ds: LoggedSet) -> pd.DataFrame:
        return pd.DataFrame({outcome: net_of_cost(ds.outcomes[outcome].to_numpy(dtype=float), ds.arm, costs)})

    ytr, yte = net(train), net(test)
    sel = select_learner((train.X, train.arm, ytr), (test.X, test.arm, yte), control, outcome, learners=learners,
                         categorical=train.categorical, test_propensity=test.propensity, seed=seed,
                         min_rows=min_rows)
    model = sel.model
    M = model.encoder.transform(test.X)
    eff = model.effects_frame(M, outcome)
    y = yte[outcome].to_numpy()
    t_arm = np.asarray(test.arm, dtype=object)
    w = 1.0 / np.asarray(test.propensity, dtype=float)

    qini, curves, at_k = {}, {}, []
    for a in arms:
        m = (t_arm == a) | (t_arm == control)
        qini[a] = qini_auc_of(eff[a].to_numpy()[m], y[m], t_arm[m] == a, w[m])
        curves[a] = qini_curve(eff[a].to_numpy()[m], y[m], t_arm[m] == a, w[m])
        for k in ks:
            at_k.append({"arm": a, "k": k, "uplift": uplift_at_k(eff[a].to_numpy()[m], y[m], t_arm[m] == a, k, w[m])})

    action_idx = np.array([actions.index(a) for a in t_arm])
    q_hat = model.levels_matrix(M, outcome, actions)
    pers = personalised_actions(model, M, outcome)
    pi_pers = one_hot(pers, actions)
    rows = _policy_rows("personalised", evaluate(pi_pers, action_idx, test.propensity, y, q_hat))
    const_pi = {}
    for a in actions:
        const_pi[a] = one_hot(np.full(len(test), a, dtype=object), actions)
        rows += _policy_rows(f"everyone:{a}", evaluate(const_pi[a], action_idx, test.propensity, y, q_hat))
    for name, fn in (extra_policies or {}).items():
        rows += _policy_rows(name, evaluate(one_hot(fn(test.X), actions), action_idx, test.propensity, y, q_hat))
    policies = pd.DataFrame(rows)
    dr_vals = policies[(policies["method"] == "dr") & policies["policy"].str.startswith("everyone:")]
    best_const = str(dr_vals.set_index("policy")["value"].idxmax()).split(":", 1)[1]
    advantage = dr_difference(pi_pers, const_pi[best_const], action_idx, test.propensity, y, q_hat)
    gains = {a: dr_difference(const_pi[a], const_pi[control], action_idx, test.propensity, y, q_hat) for a in arms}
    best_arm = max(arms, key=lambda a: gains[a].value) if arms else control
    effects = arm_effects(np.concatenate([train.outcomes[outcome].to_numpy(float), test.outcomes[outcome].to_numpy(
        float)]), np.concatenate([train.arm, test.arm]), control, np.concatenate([train.propensity, test.propensity]))
    ev = OutcomeEvaluation(outcome, control, arms, costs, effects, sel, qini, pd.DataFrame(at_k), curves, policies,
                           advantage, gains)
    ev.recommendation = recommend(advantage, best_const, gains.get(best_arm), control)
    return ev


def personalised_actions(model: UpliftModel, M: np.ndarray, target: str) -> np.ndarray:
    """The greedy policy per row: the arm with the highest positive estimated effect, else the control arm.

    Arms are prefixed before `greedy_batch` so an arm literally called "none" is not mistaken for "no offer".
    """
    eff = model.effects_frame(M, target)
    g = greedy_batch(eff.rename(columns=lambda c: f"arm:{c}"))
    return np.array([model.control if a == NONE else a.split(":", 1)[1] for a in g], dtype=object)


def one_hot(chosen: np.ndarray, actions: Sequence[str]) -> np.ndarray:
    """Deterministic policy (one action per row) as a probability matrix over `actions`."""
    chosen = np.asarray(chosen, dtype=object)
    unknown = set(chosen.tolist()) - set(actions)
    if unknown:
        raise RebuyError(f"policy chose actions {sorted(unknown)} that are not among the logged ones {list(actions)}")
    return (chosen[:, None] == np.array(actions, dtype=object)[None, :]).astype(float)
