"""The shop simulator: a seeded shop that writes the canonical tables and knows the truth behind them.

Usage::

    from rebuy.simulator import SimConfig, ShopSimulator, write_tables
    sim = ShopSimulator(SimConfig(customers=20_000, months=24, seed=7, events=True, start="2024-01-01"))
    tables = sim.run_history()        # {"customers", "orders", "events", "consent_updates", "messages"}
    sim.now                           # pd.Timestamp (UTC midnight): end of the simulated history

    # the oracle, from the FULL hidden state at `at` (any date <= sim.now; the past is replayed).
    # Day resolution: the state at the latest midnight UTC <= at.
    sim.truth(customer_ids, at, horizon_days=30, offers=("none", "coupon_10pct"), spend_days=180,
              channel=None)
        # -> index customer_id; alive, p_order, p_order__<offer>, expected_spend,
        #    expected_days_to_next_order (capped at spend_days), expected_margin__<offer>
        #    (incremental margin within horizon_days vs none, net of the offer's cost)
    sim.truth_at(pairs[customer_id, cutoff], horizon_days=30, offers=("none",), spend_days=None)
        # -> the same columns per pair (pairs' index kept, plus customer_id and cutoff), one replay pass
    sim.step(days=1, decisions=df[customer_id, decided_at, offer, channel])  # -> NEW rows of each table
    decisions, export = sim.randomized_campaign(at, offers, n_customers=None, probs=None, seed=0)
        # a past randomized campaign as a branch of the history (tables are not rewritten):
        # decisions in the decision-log shape, export = attributes at send time + arm, propensity,
        # converted / orders / spend / visited over the attribution window
    sim.save(dir); ShopSimulator.load(dir)    # JSON + npz, no pickle
    write_tables(tables, out_dir)             # <out_dir>/<table>.parquet

The oracle's probabilities and expected days come from the exact intent chain of the step function
(no sampling noise, tiny probabilities included); order values (expected_spend, the margins) from
`paths` (default `SimConfig.truth_paths`) Monte Carlo paths per customer through the same step
function, common to all offers. `truth_at` with offers=("none",) and spend_days=None needs no
sampling and is fast (tens of thousands of pairs in seconds). Also: `sim.state_at(day)` (replayed
hidden state), `sim.day_of(ts)`, `sim.customer_truth()` (hidden traits, for analysis only).

Table conventions: customers' consent_* are the consents at signup, `consent_updates` the later
changes (the current consent is the latest update, else the signup value). Orders' `amount` is the
order value before discounts; `discount` is the money value of the discounts (coupon, sale, free
shipping, points). The live shop (`step`) keeps signing customers up at the history's rate over its
last 91 days (`sim.live_signup_rate` a day), Poisson per day, with traits drawn like the history's
customers from their own seeded stream (per 28-day block), so without that a closed loop's customer base
would only age (tenure and recency drift). They join the end of `sim.ids`; `step` returns their
customers rows, orders and events, and the truth API covers them.

The shop sends its regular e-mail newsletter (`SimConfig.newsletter_every_days`, weekly by default, 0: none)
from the first day to every signed-up customer with e-mail consent, in the history, the live shop and every
oracle path alike: `messages` holds its sends (source "newsletter", message_id `newsletter-<date>:<customer>`),
its opens and clicks are in `events`, its unsubscribes in `consent_updates`, and it adds e-mail fatigue.
rebuy's own sends are not written by the simulator: delivery records them (`rebuy.ingest.append_sent_messages`).

Decisions from `randomized_campaign` carry `distribution`, `model_versions`, `scores` (dicts) and
`reasons` (list) as Python objects, as `pipelines.decision_log` stores them (`rebuy simulate
--campaign` writes them as JSON strings). Delivered messages (consented channel only) leave
email opens/clicks and push opens in the events, add per-channel fatigue and can cost consents.
The model itself is described in `rebuy.simulator.dynamics`.

`SimConfig.effects` ("heterogeneous" | "uniform" | "none") and `effect_scale` shape the true offer
effects, for campaigns whose truth favours personalising, one arm for everyone, or sending nothing.
Randomness comes from generators seeded by (seed, stream, day), so any past state can be replayed.
"""

from rebuy.simulator.params import CATEGORIES, SIM_CHANNELS, SIM_OFFERS, SimConfig
from rebuy.simulator.shop import ShopSimulator, write_tables

__all__ = ["CATEGORIES", "SIM_CHANNELS", "SIM_OFFERS", "ShopSimulator", "SimConfig", "write_tables"]
