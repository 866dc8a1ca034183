"""Next-best-offer data: logged randomized rows (`LoggedSet`), their outcomes and how they are split.

Rows come either from rebuy's own decision log (joined to the orders in the attribution window) or from an
imported campaign export. An order is credited to at most one decision: when attribution windows of one
customer overlap, the order goes to the latest decision before it (`decision_outcomes`). The held-out rows
of the promotion gate are split by customer and time (`customer_time_split`): the latest decisions of a
held-out share of customers, so no customer's later rows are valued by a model trained on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rebuy.config import OffersConfig
from rebuy.errors import DataError, RebuyError

KS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
CONVERSION, MARGIN = "conversion", "margin"
REVENUE, N_ORDERS = "revenue", "n_orders"
REGISTERED_NAME = "rebuy-offer"
FEATURE_SERVICE = "offer_v2"  # offer_v1 + activity + contact history (features.contact)


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


# --- decision log → logged set ---------------------------------------------------------------------------


def decision_outcomes(decisions: pd.DataFrame, orders: pd.DataFrame, offers: OffersConfig) -> pd.DataFrame:
    """Per decision: converted / revenue / orders in (decided_at, decided_at + attribution_days] and the
    realised margin net of the offer's costs; only randomized rows (a logged distribution with more than
    one action), since a forced action (holdout, control group) says nothing about the alternatives.

    An order is credited to at most one decision: when a customer's attribution windows overlap, it goes
    to the latest decision (of any group) made before it (ties: the larger decision id), so one purchase
    never counts as the outcome of two offers, which would double its value in every policy estimate.
    Also `cutoff`: midnight UTC before the decision, the point-in-time for its features.
    """
    need = {"decision_id", "customer_id", "decided_at", "offer", "propensity", "distribution"}
    missing = sorted(need - set(decisions.columns))
    if missing:
        raise DataError(f"decision log lacks columns {missing}", hint="read it with the decision log adapter")
    d = decisions.copy()
    d["decided_at"] = pd.to_datetime(d["decided_at"], utc=True)
    support = d["distribution"].map(lambda dist: sorted(k for k, v in (dist or {}).items() if v > 0))
    end = d["decided_at"] + pd.Timedelta(days=offers.attribution_days)
    o = orders[["customer_id", "ordered_at", "amount"]].copy()
    o["net"] = o["amount"] - (orders["returned_amount"].fillna(0.0) if "returned_amount" in orders else 0.0)
    o["order_key"] = np.arange(len(o))
    j = (
        d[["decision_id", "customer_id", "decided_at"]]
        .assign(end=end)
        .merge(o, on="customer_id", how="inner")
    )
    j = j[(j["ordered_at"] > j["decided_at"]) & (j["ordered_at"] <= j["end"])]
    j = j.sort_values(["order_key", "decided_at", "decision_id"], kind="stable").drop_duplicates(
        "order_key", keep="last"
    )
    agg = j.groupby("decision_id").agg(revenue=("net", "sum"), n_orders=("net", "size"))
    d = d[support.map(len) > 1].copy()
    d["support"] = support[d.index]
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


def customer_time_split(
    rows: pd.DataFrame, test_share: float, attribution_days: int, *, salt: str = "rebuy-offer-gate-v1"
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row masks of `decision_outcomes` rows, split by customer *and* time.

    Half of the customers (a stable hash of salt + customer id) are held out; their decisions from the
    boundary on form the test rows, the boundary being the time after which `2 * test_share` of the rows
    lie, so about `test_share` of the rows are held out. Training rows are every decision of the other
    customers and the held-out customers' decisions whose attribution window closed before the boundary:
    nothing a test row's customer did from the boundary on reaches the model, and the gate values the
    latest period, as the policy will run after it. A decision-id hash (the former split) put one
    customer's neighbouring decisions, with overlapping outcomes, on both sides.
    """
    if not 0 < test_share < 0.5:
        raise RebuyError(f"test share must be in (0, 0.5), got {test_share}")
    at = pd.Series(pd.to_datetime(rows["decided_at"], utc=True))
    held = np.array([unit_hash(salt, str(c)) < 0.5 for c in rows["customer_id"]], dtype=bool)
    ns = np.sort(at.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    boundary = pd.Timestamp(
        int(ns[int(np.floor((1 - 2 * test_share) * (len(ns) - 1)))]) if len(ns) else 0, tz="UTC"
    )
    later = np.asarray(at >= boundary, dtype=bool)
    closed = np.asarray(at + pd.Timedelta(days=attribution_days) < boundary, dtype=bool)
    return ~held | closed, held & later


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from text, identical in every process, machine and run."""
    import hashlib

    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
