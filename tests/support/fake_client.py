"""A deterministic stand-in for serving's `/score`, for tests, benchmarks and the notebooks.

Test support, not shipped: it lives outside the packages so production can never score with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rebuy.contract import OFFERS


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays -> uniform floats in [0, 1) (vectorised, wraps by design)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


class FakeScoreClient:
    """Deterministic scores from a hash of the customer id: same answer in every process and run.

    One sha256 per customer, then vectorised mixing for each number, so the fake costs little next to
    the orchestrator it stands in for. Offer estimates are spread around zero (some negative), so the
    policy has real choices; each offer's numbers depend on its name only, not on which were asked.
    `scored` lists every id scored, which tests use to check that forgotten customers never are.
    """

    def __init__(self, versions: dict[str, str] | None = None) -> None:
        self.versions = versions or {"churn": "1", "repurchase": "1", "value": "1", "offer": "1"}
        self.scored: list[str] = []

    def score(
        self, customer_ids: Sequence[str], offers: Sequence[str] | None, as_of: pd.Timestamp | None
    ) -> list[dict[str, Any]]:
        ids = [str(c) for c in customer_ids]
        self.scored.extend(ids)
        wanted = [o for o in (offers if offers is not None else OFFERS) if o != "none"]
        base = np.array(
            [int.from_bytes(hashlib.sha256(c.encode()).digest()[:8], "big") for c in ids], dtype=np.uint64
        )

        def u(k: int) -> np.ndarray:
            return _mix(base * np.uint64(31) + np.uint64(k))

        churn = np.round(u(1), 6)
        value = np.round(20 + u(2) * 300, 4)
        days = np.round(1 + u(3) * 90, 4)
        margin = {o: np.round(u(10 + 2 * OFFERS.index(o)) * 4.0 - 1.5, 6).tolist() for o in wanted}
        conv = {o: np.round(u(11 + 2 * OFFERS.index(o)) * 0.1 - 0.03, 6).tolist() for o in wanted}
        out = []
        for i, (cid, ch, val, dd) in enumerate(
            zip(ids, churn.tolist(), value.tolist(), days.tolist(), strict=True)
        ):
            est = {
                o: {"incremental_conversion": conv[o][i], "incremental_margin": margin[o][i]} for o in wanted
            }
            best = max(wanted, key=lambda o: margin[o][i], default="none")
            if best != "none" and margin[best][i] <= 0:
                best = "none"
            out.append(
                {
                    "customer_id": cid,
                    "churn_probability": ch,
                    "repurchase_probability": round(1 - ch, 6),
                    "expected_days_to_next_order": dd,
                    "expected_value": val,
                    "segment": "dormant" if ch > 0.7 else ("high_value" if val > 260 else "potential"),
                    "offers": est,
                    "best_offer": best,
                    "reasons": [
                        {
                            "model": "churn",
                            "feature": "days_since_last_order",
                            "value": 1.0,
                            "contribution": round(ch - 0.5, 6),
                        }
                    ],
                    "model_versions": dict(self.versions),
                    "feature_age_seconds": 60.0,
                    "cold_start": False,
                }
            )
        return out
