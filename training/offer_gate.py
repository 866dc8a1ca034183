"""The offer policy's promotion gate: a candidate must surely beat the current policy and sending nothing."""

from __future__ import annotations

from rebuy.errors import RebuyError
from training.offer_eval import (
    OutcomeEvaluation,
)


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
