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
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NumpyOffer:
    """An OfferModel with a MarginModel margin part, predicting without pandas; everything else is the model's."""

    model: Any

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
