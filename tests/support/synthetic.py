"""A self-contained synthetic scorer: tiny LightGBM boosters and an in-memory feature reader.

Test support, not shipped: used by the serving tests, the real-server tests and the serving and loop
benchmarks (through tests/support/synthetic_service.py), so the service can be exercised without a trained
registry or a Feast store. It is
deterministic for a seed (LightGBM with num_threads=1, deterministic=True), so two processes
built from the same seed score identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from rebuy.config import SegmentsConfig
from serving.scorer import Scorer
from training.segments import segment, value_cut

if TYPE_CHECKING:
    from rebuy.config import Config

FEATURES: dict[str, tuple[str, ...]] = {
    "churn_v1": ("days_since_last_order", "orders_90d", "spend_365d", "engagement_ratio"),
    "repurchase_v1": ("days_since_last_order", "views_24h", "order_history_views_7d", "orders_90d"),
    "value_v1": ("spend_365d", "orders_90d", "tenure_days"),
    "offer_v1": ("days_since_last_order", "spend_365d", "engagement_ratio"),
}
ALL_FEATURES: tuple[str, ...] = tuple(sorted({f for fs in FEATURES.values() for f in fs}))


@dataclass(frozen=True)
class SyntheticModel:
    """A LightGBM booster with a Platt calibrator (classifiers) or identity (regressors)."""

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    feature_service: str
    version: str
    calibrator: tuple[float, float] | None = None  # (a, b): p = 1 / (1 + exp(-(a * raw + b)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.calibrator is None:
            return np.asarray(self.booster.predict(X, num_threads=1))
        a, b = self.calibrator
        raw = np.asarray(self.booster.predict(X, raw_score=True, num_threads=1))
        return 1.0 / (1.0 + np.exp(-(a * raw + b)))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=1))


@dataclass(frozen=True)
class SyntheticOfferModel:
    """Incremental conversion per offer from one booster each; margin = conv * basket * margin - cost."""

    boosters: Mapping[str, lgb.Booster]
    feature_names: tuple[str, ...]
    feature_service: str
    version: str
    basket: float = 60.0
    margin_rate: float = 0.35
    costs: Mapping[str, float] = field(default_factory=dict)

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for o, b in self.boosters.items():
            conv = np.asarray(b.predict(X, num_threads=1))
            out[o] = (conv, conv * self.basket * self.margin_rate - self.costs.get(o, 0.0))
        return out


@dataclass
class InMemoryReader:
    """A FeatureReader over a DataFrame indexed by customer_id (+ `updated_at` for freshness)."""

    table: pd.DataFrame
    feature_names: tuple[str, ...]
    shared: InMemoryStore | None = None
    _pos: dict[str, int] = field(init=False, repr=False)
    _X: np.ndarray = field(init=False, repr=False)
    _ts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pos = {str(c): i for i, c in enumerate(self.table.index)}
        self._X = self.table.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64)
        self._ts = self.table["updated_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)

    def read(
        self, customer_ids: Sequence[str], now: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.array([self._pos.get(c, -1) for c in customer_ids], dtype=np.int64)
        found = idx >= 0
        X = np.full((len(idx), len(self.feature_names)), np.nan)
        X[found] = self._X[idx[found]]
        age = np.full(len(idx), np.nan)
        age[found] = (now.value - self._ts[idx[found]]) / 1e9
        return X, found, age


class InMemoryStore:
    """Several services over one feature table, read with one id lookup per request for all of them.

    The in-memory counterpart of features.online.OnlineStoreReader (the scorer calls `read_services`
    for readers whose `shared` is this store); results equal each InMemoryReader's own `read`.
    """

    def __init__(self, table: pd.DataFrame, services: Mapping[str, Sequence[str]]) -> None:
        names = list(dict.fromkeys(f for fs in services.values() for f in fs))
        self.readers = {svc: InMemoryReader(table, tuple(fs), shared=self) for svc, fs in services.items()}
        self._cols = {svc: np.array([names.index(f) for f in fs]) for svc, fs in services.items()}
        self._pos = {str(c): i for i, c in enumerate(table.index)}
        self._X = table.loc[:, names].to_numpy(dtype=np.float64)
        self._ts = table["updated_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)

    def read_services(
        self, services: Sequence[str], customer_ids: Sequence[str], now: pd.Timestamp
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        get = self._pos.get
        idx = np.array([get(c, -1) for c in customer_ids], dtype=np.int64)
        found = idx >= 0
        rows = np.full((len(idx), self._X.shape[1]), np.nan)
        rows[found] = self._X[idx[found]]
        age = np.full(len(idx), np.nan)
        age[found] = (now.value - self._ts[idx[found]]) / 1e9
        return {svc: (rows[:, self._cols[svc]], found, age) for svc in services}


def feature_table(n: int, seed: int, updated_at: str = "2025-06-30T00:00:00Z") -> pd.DataFrame:
    """n synthetic customers `c000000..`; ~10% of values missing, as in a real store."""
    rng = np.random.default_rng(seed)
    data = {
        "days_since_last_order": rng.exponential(40, n),
        "orders_90d": rng.poisson(1.5, n).astype(float),
        "spend_365d": rng.lognormal(4, 1, n),
        "engagement_ratio": rng.uniform(0, 2, n),
        "views_24h": rng.poisson(2, n).astype(float),
        "order_history_views_7d": rng.poisson(0.5, n).astype(float),
        "tenure_days": rng.uniform(10, 700, n),
    }
    df = pd.DataFrame(data, index=pd.Index([f"c{i:06d}" for i in range(n)], name="customer_id"))
    mask = rng.uniform(size=df.shape) < 0.1
    df = df.mask(mask)
    df["updated_at"] = pd.Timestamp(updated_at)
    return df


def _fit(X: np.ndarray, y: np.ndarray, objective: str, seed: int, rounds: int) -> lgb.Booster:
    params = {
        "objective": objective,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "deterministic": True,
        "seed": seed,
        "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=rounds)


def synthetic_scorer(
    n_customers: int = 2000,
    seed: int = 0,
    version: str = "1",
    rounds: int = 30,
    catalogue: tuple[str, ...] = ("none", "care_message", "coupon_10pct", "free_shipping"),
) -> tuple[Scorer, pd.DataFrame]:
    """A Scorer whose models were trained on synthetic labels, and the feature table its reader serves."""
    table = feature_table(n_customers, seed)
    rng = np.random.default_rng(seed + 1)

    def X(svc: str) -> np.ndarray:
        return table.loc[:, list(FEATURES[svc])].to_numpy(dtype=np.float64)

    d = np.nan_to_num(table["days_since_last_order"].to_numpy(), nan=40.0)
    o = np.nan_to_num(table["orders_90d"].to_numpy(), nan=1.0)
    s = np.nan_to_num(table["spend_365d"].to_numpy(), nan=50.0)
    churn_y = (rng.uniform(size=n_customers) < 1 / (1 + np.exp(-(d - 45) / 15 + 0.5 * o))).astype(float)
    rep_y = (rng.uniform(size=n_customers) < 1 / (1 + np.exp((d - 30) / 15 - 0.3 * o))).astype(float)
    days_y = np.maximum(1.0, 50 - 5 * o + rng.normal(0, 5, n_customers))
    value_y = np.maximum(0.0, 0.5 * s + rng.normal(0, 10, n_customers))

    def model(
        name: str, svc: str, y: np.ndarray, obj: str, cal: tuple[float, float] | None
    ) -> SyntheticModel:
        return SyntheticModel(_fit(X(svc), y, obj, seed, rounds), FEATURES[svc], svc, version, cal)

    models = {
        "churn": model("churn", "churn_v1", churn_y, "binary", (1.0, 0.0)),
        "repurchase": model("repurchase", "repurchase_v1", rep_y, "binary", (0.9, -0.1)),
        "days_to_next": model("days_to_next", "repurchase_v1", days_y, "regression", None),
        "value": model("value", "value_v1", value_y, "regression", None),
    }
    e = np.nan_to_num(table["engagement_ratio"].to_numpy(), nan=1.0)
    boosters = {
        offer: _fit(
            X("offer_v1"),
            0.02 * (k + 1) * (e - 0.8) + rng.normal(0, 0.01, n_customers),
            "regression",
            seed + k,
            rounds,
        )
        for k, offer in enumerate(o for o in catalogue if o != "none")
    }
    offer_model = SyntheticOfferModel(
        boosters, FEATURES["offer_v1"], "offer_v1", version, costs={"coupon_10pct": 0.5, "free_shipping": 0.3}
    )
    readers = InMemoryStore(table, FEATURES).readers
    seg_cfg = SegmentsConfig()
    cut = value_cut(models["value"].predict(X("value_v1")), seg_cfg)
    scorer = Scorer(
        models=models,
        readers=readers,
        segmenter=partial(segment, cut=cut, cfg=seg_cfg),
        catalogue=catalogue,
        offer_model=offer_model,
    )
    return scorer, table


def synthetic_version() -> str:
    """The synthetic "champion" version: the file REBUY_SYNTHETIC_VERSION_FILE if set (a test moves the
    champion by rewriting it while a server runs), else REBUY_SYNTHETIC_VERSION, else "1"."""
    import os
    from pathlib import Path

    path = os.environ.get("REBUY_SYNTHETIC_VERSION_FILE")
    if path and Path(path).is_file():
        return Path(path).read_text(encoding="utf-8").strip()
    return os.environ.get("REBUY_SYNTHETIC_VERSION", "1")


def scorer_from_config(cfg: Config) -> Scorer:
    """SyntheticService's factory: a synthetic scorer for a server test."""
    return synthetic_scorer(version=synthetic_version())[0]


def champion_versions(cfg: Config) -> dict[str, str]:
    """SyntheticService's watcher source: where the synthetic "@champion" points now."""
    return {name: synthetic_version() for name in ("churn", "days_to_next", "offer", "repurchase", "value")}


def bench_scorer(cfg: Config) -> Scorer:
    """BenchService's factory (benchmarks/serve.py, loop.py): 20k customers, 100 trees per booster."""
    return synthetic_scorer(n_customers=20_000, rounds=100)[0]
