"""The offer model's estimates without pandas, for the one-customer hot path of the service.

`training.offer.OfferModel.predict` takes its margin estimates from `MarginModel.effects_frame`, which
builds pandas frames and Series per call: on pipeline-built champions that is ~3 ms of CPU for one
customer, while all of the request's boosters together take ~0.1 ms. `numpy_offer` wraps an OfferModel
whose margin part is a MarginModel and computes the same numbers from the model's own numpy pieces (its
`_levels`, `center`, `model_mean` and `shrink`) with the same float operations in the same order, so the
results are identical, not merely close (tests/serving/test_offer_numpy.py compares them exactly). Any other
offer model (an UpliftModel margin part, the synthetic one) is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NumpyOffer:
    """An OfferModel with a MarginModel margin part, predicting without pandas; everything else is the model's.

    When both parts use the same T-learner for conversion (the pipeline's champions: one learner, two
    references), each arm's conversion level is predicted once and all arms are combined as columns of one
    matrix: the same float operations per element as `UpliftModel.predict` and `MarginModel._levels`, a
    handful of numpy calls instead of a few per arm.
    """

    model: Any
    _plan: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _shared_levels_plan(self.model))

    @property
    def feature_names(self) -> Sequence[str]:
        return list(self.model.feature_names)

    @property
    def feature_service(self) -> str:
        return str(self.model.feature_service)

    @property
    def version(self) -> str:
        return str(self.model.version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """offer -> (incremental conversion, incremental margin), as OfferModel.predict returns them."""
        if self._plan is not None:
            return self._predict_shared(X)
        conv = self.model.conversion.predict(X)
        margin = self.model.margin
        levels = margin._levels(X)
        control = levels[margin.control]
        center, mean, shrink = margin.center, margin.model_mean, margin.shrink
        out = {}
        for arm in self.model.offers:
            effect = levels[arm] - control  # MarginModel.raw_effects
            if center:  # MarginModel.effects_frame
                effect = center[arm] + shrink * (effect - mean.get(arm, center[arm]))
            out[arm] = (conv[arm][0], effect)
        return out

    def _predict_shared(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from training.offer import _basket

        plan: _Plan = self._plan
        margin = self.model.margin
        X = margin.conversion._check(X)
        # column 0 = control, then the arms: UpliftModel._p per arm
        P = np.column_stack(
            [np.asarray(b.predict(X, num_threads=1), dtype=np.float64) for b in plan.boosters]
        )
        conv = P[:, 1:] - P[:, :1]  # UpliftModel.predict (T-learner): level(arm) - level(control)
        r = np.maximum(_basket(margin.revenue, X), 0.0)  # MarginModel._levels
        k = np.maximum(_basket(margin.orders, X), 1.0)
        L = (
            np.clip(P, 0.0, 1.0) * (plan.keep[None, :] * r[:, None] - plan.ship[None, :] * k[:, None])
            - plan.cost
        )
        effect = L[:, 1:] - L[:, :1]  # MarginModel.raw_effects
        if plan.center is not None:  # MarginModel.effects_frame
            effect = plan.center + margin.shrink * (effect - plan.mean)
        return {arm: (conv[:, j], effect[:, j]) for arm, j in plan.columns}


@dataclass(frozen=True)
class _Plan:
    boosters: tuple[Any, ...]  # conversion learner per [control, *arms]
    keep: np.ndarray  # per [control, *arms]: margin share - redemption share
    ship: np.ndarray
    cost: np.ndarray
    center: np.ndarray | None  # per arm
    mean: np.ndarray | None
    columns: tuple[tuple[str, int], ...]  # offer -> column among the arms


def _shared_levels_plan(model: Any) -> _Plan | None:
    """The arrays `_predict_shared` needs, or None when the two parts do not share one T-learner."""
    conv, margin = model.conversion, model.margin
    mc = margin.conversion
    if not (
        conv.learner == mc.learner == "t" and conv.control == mc.control and list(conv.arms) == list(mc.arms)
    ):
        return None
    if not conv.targets or not mc.targets or conv.targets[0] != mc.targets[0]:
        return None
    target, actions = conv.targets[0], [conv.control, *conv.arms]
    keys = [f"{target}|mu|{a}" for a in actions]
    if any(conv.boosters.get(key) is None or conv.boosters[key] is not mc.boosters.get(key) for key in keys):
        return None
    if any(a not in margin.economics for a in actions) or set(model.offers) - set(conv.arms):
        return None
    if margin.center and any(a not in margin.center for a in conv.arms):
        return None
    econ = [margin.economics[a] for a in actions]
    center = mean = None
    if margin.center:
        center = np.array([margin.center[a] for a in conv.arms], dtype=np.float64)
        mean = np.array([margin.model_mean.get(a, margin.center[a]) for a in conv.arms], dtype=np.float64)
    return _Plan(
        boosters=tuple(conv.boosters[key] for key in keys),
        keep=np.array([e.margin - e.redemption_share for e in econ], dtype=np.float64),
        ship=np.array([e.shipping_per_order for e in econ], dtype=np.float64),
        cost=np.array([e.cost for e in econ], dtype=np.float64),
        center=center,
        mean=mean,
        columns=tuple((o, list(conv.arms).index(o)) for o in model.offers),
    )


def numpy_offer(model: Any) -> Any:
    """`model` wrapped in NumpyOffer when its margin part is a MarginModel, else `model` itself."""
    try:
        from training.offer import MarginModel, OfferModel
    except ImportError:
        return model
    if type(model) is OfferModel and type(model.margin) is MarginModel:
        return NumpyOffer(model)
    return model


__all__ = ["NumpyOffer", "numpy_offer"]
