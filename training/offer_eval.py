"""Next-best-offer evaluation: one path from a fitted uplift model to its policy's value on held-out rows.

`learn_and_evaluate` fits every learner on the training rows, keeps the better by Qini, then values the
greedy policy, every constant policy ("everyone gets X", "nobody") and any other candidate with IPS, SNIPS
and doubly robust estimates on the held-out rows. There is no second implementation for campaigns:
`training.campaign` calls the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from rebuy.errors import DataError, RebuyError
from training.offer_data import (
    KS,
    LoggedSet,
    net_of_cost,
)
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
from training.uplift import (
    LEARNERS,
    Encoder,
    Selection,
    select_learner,
)

# --- learn + evaluate --------------------------------------------------------------------------------------


class EffectModel(Protocol):
    """What evaluation needs of a fitted model (`training.uplift.UpliftModel`, `training.offer_learn.MarginModel`)."""

    @property
    def encoder(self) -> Encoder: ...
    @property
    def arms(self) -> list[str]: ...
    @property
    def control(self) -> str: ...
    def effects_frame(self, X: np.ndarray, target: str) -> pd.DataFrame: ...
    def levels_matrix(self, X: np.ndarray, target: str, actions: Sequence[str]) -> np.ndarray: ...


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
    model: EffectModel,
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
    model: EffectModel, M: np.ndarray, target: str, allowed: pd.DataFrame | None = None
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
