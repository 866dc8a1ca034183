"""Campaigns exported by the shop simulator, in the three scenarios of its `effects` knob, through the real
import path: the per-arm effects cover the truth and the recommendation matches what the truth favours."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from rebuy.campaign_import import validate_campaign
from rebuy.config import CampaignImportConfig, Config
from rebuy.simulator import ShopSimulator, SimConfig
from training.campaign import campaign_truth, learn_campaign
from training.offer import realised_margin

OFFERS = ("none", "coupon_10pct", "wake_up_gift")
ATTRS = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "discount_share",
    "last_category",
    "age",
    "region",
    "consent_email",
    "consent_sms",
    "consent_push",
]
# effect_scale 6 makes the simulator's effects large enough that a 20k-customer campaign can tell the
# scenarios apart (at scale 1 the effects are within the noise of such a campaign)
SCALE = 6.0


@pytest.fixture(scope="module", params=["heterogeneous", "uniform", "none"])
def scenario(request, tmp_path_factory):
    effects = request.param
    sim = ShopSimulator(
        SimConfig(customers=20_000, months=9, seed=5, events=False, effects=effects, effect_scale=SCALE)
    )
    sim.run_history()
    _, export = sim.randomized_campaign(sim.now, offers=OFFERS, seed=1)
    cfg = Config()
    # a customer without consent on any channel got no message: no cost, as in the truth
    reachable = export[["consent_email", "consent_sms", "consent_push"]].any(axis=1)
    sent = export["arm"].where(reachable, "none")
    export["margin"] = realised_margin(
        export["spend"].to_numpy(), export["orders"].to_numpy(), sent.to_numpy(), cfg.offers
    )
    path = tmp_path_factory.mktemp(effects) / "campaign.csv"
    # as the simulator writes it: converted and the consents are True/False, read as 1/0
    export[["customer_id", *ATTRS, "arm", "propensity", "converted", "margin"]].to_csv(path, index=False)
    roles = CampaignImportConfig(
        customer_id="customer_id",
        arm="arm",
        control="none",
        propensity="propensity",
        outcomes=["converted", "margin"],
        attributes=ATTRS,
        min_rows_per_arm=200,
    )
    data = validate_campaign(cfg, path, roles, name=effects)
    report = learn_campaign(data, None, primary="margin", use_costs=False, seed=0)
    sample = export.sample(3000, random_state=0)
    truth = campaign_truth(sim, sample, OFFERS, cfg.offers.attribution_days, paths=32)
    X = data.frame.set_index("customer_id").loc[sample["customer_id"], ATTRS].reset_index(drop=True)
    return effects, report, truth, X


@pytest.mark.parametrize(
    ("outcome", "true_effect"),
    [
        ("converted", lambda truth, arm: truth[f"p_order__{arm}"] - truth["p_order"]),
        ("margin", lambda truth, arm: truth[f"expected_margin__{arm}"]),  # already incremental, net of cost
    ],
)
def test_arm_effects_cover_the_truth(scenario, outcome, true_effect) -> None:
    _, report, truth, _ = scenario
    eff = report.outcomes[outcome].effects.set_index("arm")
    for arm in OFFERS[1:]:
        diff = true_effect(truth, arm)
        true_ate = float(diff.mean())
        # simultaneous over arms, widened by the truth sample's own standard error (3000 of ~19k customers)
        slack = norm.ppf(1 - 0.05 / 4) * float(diff.std()) / np.sqrt(len(truth))
        assert eff.loc[arm, "sim_low"] - slack <= true_ate <= eff.loc[arm, "sim_high"] + slack, (
            arm,
            true_ate,
            eff.loc[arm].to_dict(),
        )


def test_recommendation_matches_what_the_truth_favours(scenario) -> None:
    effects, report, truth, _ = scenario
    margins = truth[[f"expected_margin__{o}" for o in OFFERS]].to_numpy()
    const = margins.mean(axis=0)
    oracle = margins.max(axis=1).mean()
    rec = report.recommendation
    if effects == "heterogeneous":
        assert oracle > 1.1 * const.max() > 0  # the truth favours personalising
        assert rec["action"] == "personalise", rec
    elif effects == "uniform":
        best = OFFERS[int(np.argmax(const))]
        assert const.max() > 0.9 * oracle  # one arm for everyone is nearly the best there is
        assert rec["action"] == "best_arm" and rec["arm"] == best, rec
    else:
        assert const[1:].max() < 0  # every arm loses money on average
        assert rec["action"] == "nothing", rec


def test_model_average_effects_cover_the_truth(scenario) -> None:
    """The uplift model's mean predicted effect per offer (on the sampled customers) lies within the
    simultaneous 95% interval of the campaign's effect estimate around the truth."""
    _, report, truth, X = scenario
    ev = report.outcomes["converted"]
    model = ev.selection.model
    est = model.effects_frame(model.encoder.transform(X), "converted")
    se = ev.effects.set_index("arm")["se"]
    z = norm.ppf(1 - 0.05 / (2 * (len(OFFERS) - 1)))
    for arm in OFFERS[1:]:
        diff = truth[f"p_order__{arm}"] - truth["p_order"]
        slack = z * float(diff.std()) / np.sqrt(len(diff))  # the truth sample's own error
        assert abs(est[arm].mean() - diff.mean()) <= z * se[arm] + slack, (arm, est[arm].mean(), diff.mean())


def test_values_unseen_in_the_campaign_do_not_crash_scoring(scenario) -> None:
    """A region, a category and a consent value the campaign never had: finite effects, not an error."""
    _, report, _, X = scenario
    model = report.outcomes["margin"].selection.model
    new = X.head(3).copy()
    new["region"] = ["ZZ", None, "north pole"]
    new["last_category"] = ["garden-furniture", "toys", None]
    new["age"] = [np.nan, 200.0, 18.0]
    est = model.effects_frame(model.encoder.transform(new), "margin")
    assert len(est) == 3 and np.isfinite(est[list(OFFERS[1:])].to_numpy()).all()
