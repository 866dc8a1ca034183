"""Exploration among recently contacted customers stays within its (small, logged) share."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.policy_layer import exploration_shares, recently_contacted
from rebuy.config import OffersConfig
from training.policy import decide_batch

NAMES = sorted(o for o in OffersConfig().catalogue if o != "none")
AS_OF = pd.Timestamp("2025-06-01 10:00", tz="UTC")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10**6),
    recent_share=st.sampled_from([0.0, 0.01, 0.02, 0.05]),
    share=st.sampled_from([0.1, 0.3, 1.0]),
    kind=st.sampled_from(["epsilon", "softmax"]),
)
def test_recently_contacted_explore_within_their_share(n, seed, recent_share, share, kind) -> None:
    rng = np.random.default_rng(seed)
    offers = OffersConfig(exploration_share=share, explore_recent_share=recent_share, exploration=kind)
    margins = rng.normal(0, 1, (n, len(NAMES)))
    allowed = rng.random((n, len(NAMES))) < 0.7
    ids = pd.Series([f"c{i}" for i in range(n)])
    recent = set(ids[rng.random(n) < 0.5])
    explore = exploration_shares(ids, recent, offers)
    res = decide_batch(margins, allowed, offers, [f"d{seed}-{i}" for i in range(n)], explore)
    greedy = np.where(
        (np.where(allowed, margins, -np.inf).max(axis=1) > 0),
        1 + np.argmax(np.where(allowed, margins, -np.inf), axis=1),
        0,
    )
    off_greedy = 1.0 - res.probs[np.arange(n), greedy]
    is_recent = ids.isin(recent).to_numpy()
    assert (off_greedy[is_recent] <= recent_share + 1e-12).all()
    assert (off_greedy[~is_recent] <= share + 1e-12).all()
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0)
    # a drawn action always has positive logged probability (the propensity the gate weights by)
    assert (res.probs[np.arange(n), res.action] > 0).all()


def test_recently_contacted_from_decisions_and_messages() -> None:
    history = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "decided_at": [AS_OF - pd.Timedelta(days=d) for d in (3, 3, 20, 1)],
            "group": ["treatment", "control", "treatment", "treatment"],
            "offer": ["coupon_10pct", "none", "points_x2", "none"],
        }
    )
    messages = pd.DataFrame({"customer_id": ["e", "f"], "sent_at": [AS_OF - pd.Timedelta(days=2), AS_OF]})
    # a: sent an offer 3 days ago; b: control (nothing sent); c: 20 days ago (rested); d: decided none;
    # e: a newsletter 2 days ago; f: a message exactly now counts
    assert recently_contacted(history, AS_OF, 14, messages) == {"a", "e", "f"}
    assert recently_contacted(history, AS_OF, 0, messages) == set()
