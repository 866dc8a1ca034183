"""The scoring logic shared by the HTTP service and `rebuy score`: feature matrices in, results out.

One code path for online and offline scoring is what makes "served == batch == offline" hold:
the BentoML service and the batch job are thin shells around `Scorer`. Everything here is pure
given its collaborators (models, feature readers), which are small Protocols so tests can use
tiny boosters and an in-memory reader, and production uses the MLflow champions and Feast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from rebuy.errors import RebuyError

if TYPE_CHECKING:
    from rebuy.config import Config

CHURN, REPURCHASE, DAYS, VALUE = "churn", "repurchase", "days_to_next", "value"
SCORE_MODELS: tuple[str, ...] = (CHURN, REPURCHASE, DAYS, VALUE)
OFFER_MODEL = "offer"


class ScoringModel(Protocol):
    """What the scorer needs of a model bundle (training.registry's ModelBundle satisfies it).

    Read-only members, so frozen dataclasses and properties satisfy it too."""

    @property
    def feature_names(self) -> Sequence[str]: ...
    @property
    def feature_service(self) -> str: ...
    @property
    def version(self) -> str: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class OfferModel(Protocol):
    """Uplift learners: offer -> (incremental conversion, incremental margin) per row."""

    @property
    def feature_names(self) -> Sequence[str]: ...
    @property
    def feature_service(self) -> str: ...
    @property
    def version(self) -> str: ...

    def predict(self, X: np.ndarray) -> Mapping[str, tuple[np.ndarray, np.ndarray]]: ...


class FeatureReader(Protocol):
    """Online features of one FeatureService, columns in the service's feature order."""

    def read(
        self, customer_ids: Sequence[str], now: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (X float64 [n, f] with NaN for missing, found bool [n], feature age seconds float [n])."""
        ...


ReasonRow = list[tuple[str, float | None, float]]  # (feature, value, contribution)
Explainer = Callable[[Any, np.ndarray, int], list[ReasonRow]]
Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]
ScorerFactory = Callable[["Config"], "Scorer"]


class RequestError(RebuyError):
    """A request the scorer cannot honour (unknown offer or feature); the service maps it to a 400."""


class StartupError(RebuyError):
    """The service cannot start: a model, the registry or the online store is missing."""


def bundle_reasons(model: Any, X: np.ndarray, k: int) -> list[ReasonRow]:
    """Top-k features by |contribution| per row (training.reasons.top_reasons: LightGBM TreeSHAP).

    Contributions are in raw-score space (log-odds for classifiers): that is what adds up, so it is
    what a "reason" can honestly claim. The value is the feature as the model saw it (None = missing).
    """
    if X.shape[0] == 1:
        one = _one_row_reasons(model, X, k)
        if one is not None:
            return [one]
    from training.reasons import top_reasons

    names, contrib = top_reasons(model, X, k)
    pos = {n: i for i, n in enumerate(model.feature_names)}
    out: list[ReasonRow] = []
    for i in range(X.shape[0]):
        row: ReasonRow = []
        for name, c in zip(names[i].tolist(), contrib[i].tolist(), strict=True):
            v = X[i, pos[name]]
            row.append((name, None if v != v else float(v), float(c)))
        out.append(row)
    return out


def _one_row_reasons(model: Any, X: np.ndarray, k: int) -> ReasonRow | None:
    """`top_reasons` for one row in plain Python (its numpy calls cost more than the ranking itself).

    Same ranking: a stable sort by -|contribution|, as `np.argsort(..., kind="stable")` does; None (use
    top_reasons) if a contribution is NaN, where the two sorts would disagree.
    """
    contrib = np.asarray(model.contributions(X))[0, :-1].tolist()
    if any(c != c for c in contrib):
        return None
    names, row, key = model.feature_names, X[0].tolist(), [-abs(c) for c in contrib]
    top = sorted(range(len(contrib)), key=key.__getitem__)[: min(k, len(contrib))]
    return [(names[j], None if row[j] != row[j] else row[j], contrib[j]) for j in top]


def greedy_best(margins: np.ndarray, offers: Sequence[str]) -> np.ndarray:
    """Per row, the offer with the largest incremental margin; 'none' unless something pays (> 0).

    Same rule as training.policy.greedy / greedy_batch (the orchestrator's): 'none' wins ties at 0,
    other ties go to the offer that sorts first, non-finite estimates never win. Done on numpy here
    because the DataFrame form costs more than the models on a one-customer request.
    """
    n = margins.shape[0]
    cols = sorted((o, j) for j, o in enumerate(offers) if o != "none")
    if not cols:
        return np.full(n, "none", dtype=object)
    vals = margins[:, [j for _, j in cols]]
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    full = np.column_stack([np.zeros(n), vals])
    names = np.array(["none", *(o for o, _ in cols)], dtype=object)
    return names[np.argmax(full, axis=1)]


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of n customers as columns (numpy), turned into JSON records or a DataFrame at the edge."""

    customer_ids: list[str | None]
    churn: np.ndarray
    repurchase: np.ndarray
    days_to_next: np.ndarray
    value: np.ndarray
    segment: np.ndarray
    offers: tuple[str, ...]
    conversion: np.ndarray  # [n, len(offers)]
    margin: np.ndarray  # [n, len(offers)]
    best_offer: np.ndarray
    reasons: list[list[tuple[str, str, float | None, float]]]  # (model, feature, value, contribution)
    model_versions: dict[str, str]
    feature_age: np.ndarray  # NaN = unknown
    cold_start: np.ndarray
    matrices: Mapping[str, np.ndarray] = field(
        default_factory=dict
    )  # per service, as scored (prediction log)

    def __len__(self) -> int:
        return len(self.customer_ids)

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready dicts in the shape of `serving.schemas.CustomerScore` (built by hand: hot path)."""
        churn, rep, days, val = (
            a.tolist() for a in (self.churn, self.repurchase, self.days_to_next, self.value)
        )
        conv, marg, age = self.conversion.tolist(), self.margin.tolist(), self.feature_age.tolist()
        seg, best, cold = self.segment.tolist(), self.best_offer.tolist(), self.cold_start.tolist()
        out = []
        for i, cid in enumerate(self.customer_ids):
            out.append(
                {
                    "customer_id": cid,
                    "churn_probability": churn[i],
                    "repurchase_probability": rep[i],
                    "expected_days_to_next_order": days[i],
                    "expected_value": val[i],
                    "segment": seg[i],
                    "offers": {
                        o: {"incremental_conversion": conv[i][j], "incremental_margin": marg[i][j]}
                        for j, o in enumerate(self.offers)
                    },
                    "best_offer": best[i],
                    "reasons": [
                        {"model": m, "feature": f, "value": v, "contribution": c}
                        for m, f, v, c in self.reasons[i]
                    ],
                    "model_versions": self.model_versions,
                    "feature_age_seconds": None if age[i] != age[i] else age[i],
                    "cold_start": cold[i],
                }
            )
        return out

    def to_frame(self, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        """Flat columns for Parquet; reasons and versions as JSON text (one schema for every row)."""
        cols: dict[str, Any] = {"customer_id": pd.Series(self.customer_ids, dtype=object)}
        if as_of is not None:
            cols["as_of"] = pd.Series([as_of] * len(self), dtype="datetime64[ns, UTC]")
        cols |= {
            "churn_probability": self.churn,
            "repurchase_probability": self.repurchase,
            "expected_days_to_next_order": self.days_to_next,
            "expected_value": self.value,
            "segment": self.segment,
        }
        for j, o in enumerate(self.offers):
            cols[f"offer_{o}_incremental_conversion"] = self.conversion[:, j]
            cols[f"offer_{o}_incremental_margin"] = self.margin[:, j]
        cols["best_offer"] = self.best_offer
        cols["reasons"] = [
            json.dumps([{"model": m, "feature": f, "value": v, "contribution": c} for m, f, v, c in r])
            if r
            else "[]"
            for r in self.reasons
        ]
        cols["model_versions"] = json.dumps(self.model_versions, sort_keys=True)
        cols["feature_age_seconds"] = self.feature_age
        cols["cold_start"] = self.cold_start
        return pd.DataFrame(cols)


@dataclass(frozen=True)
class Scorer:
    """Champion models + online feature readers -> per-customer scores. Immutable: reload swaps a new one."""

    models: Mapping[str, ScoringModel]
    readers: Mapping[str, FeatureReader]
    segmenter: Segmenter
    catalogue: tuple[str, ...]
    offer_model: OfferModel | None = None
    explainer: Explainer = bundle_reasons
    explained: tuple[str, ...] = (CHURN, REPURCHASE)
    reasons_k: int = 3
    _columns: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)
    _take: dict[str, np.ndarray | None] = field(init=False, repr=False, compare=False)
    # fixed per Scorer, so built once here rather than on every request
    _all: dict[str, Any] = field(init=False, repr=False, compare=False)
    _versions: dict[str, str] = field(init=False, repr=False, compare=False)
    _services: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _one_store: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        missing = [m for m in SCORE_MODELS if m not in self.models]
        if missing:
            raise StartupError(f"scorer: no champion for models {missing}; train and promote them first")
        # Every LightGBM booster inside the models answers one-row calls through LightGBM's prebuilt
        # single-row predictor (serving.fastpredict): same numbers, a fraction of Booster.predict's cost.
        from serving.fastpredict import FastBooster, accelerate

        shared: dict[str, FastBooster] = {}  # identical boosters across the models become one
        object.__setattr__(self, "models", {name: accelerate(m, shared) for name, m in self.models.items()})
        if self.offer_model is not None:
            from serving.offer_numpy import numpy_offer

            # numpy_offer: the margin estimates without pandas frames (same numbers; ~3 ms less per request)
            object.__setattr__(self, "offer_model", numpy_offer(accelerate(self.offer_model, shared)))
        models: dict[str, Any] = dict(self.models)
        if self.offer_model is not None:
            models[OFFER_MODEL] = self.offer_model
        object.__setattr__(self, "_all", models)
        object.__setattr__(self, "_versions", {n: str(m.version) for n, m in sorted(models.items())})
        object.__setattr__(self, "_services", tuple(sorted({m.feature_service for m in models.values()})))
        unread = sorted({m.feature_service for m in models.values()} - set(self.readers))
        if unread:
            raise StartupError(f"scorer: no online feature reader for FeatureServices {unread}")
        # every service in one store that can also combine found/age (features.online.OnlineStoreReader):
        # `read` is then one call that returns exactly what the per-service path below computes
        stores = {id(s): s for s in (getattr(self.readers[v], "shared", None) for v in self._services)}
        one = next(iter(stores.values())) if len(stores) == 1 else None
        object.__setattr__(self, "_one_store", one if hasattr(one, "read_all") else None)
        # A service's matrix is in its reader's column order; each model takes its own order from it,
        # so a model trained with a different feature order still sees the right columns.
        order: dict[str, list[str]] = {}
        for m in models.values():
            reader_names = getattr(self.readers[m.feature_service], "feature_names", None)
            order.setdefault(m.feature_service, list(reader_names or m.feature_names))
        take: dict[str, np.ndarray | None] = {}
        for name, m in models.items():
            pos = {n: i for i, n in enumerate(order[m.feature_service])}
            absent = [f for f in m.feature_names if f not in pos]
            if absent:
                raise StartupError(
                    f"model {name} v{m.version} needs features {absent[:10]} that FeatureService "
                    f"{m.feature_service!r} does not serve; re-apply features or retrain"
                )
            idx = np.array([pos[f] for f in m.feature_names], dtype=np.int64)
            take[name] = None if np.array_equal(idx, np.arange(len(pos))) else idx
        object.__setattr__(self, "_columns", {s: {n: i for i, n in enumerate(c)} for s, c in order.items()})
        object.__setattr__(self, "_take", take)

    def model_matrix(self, name: str, mats: Mapping[str, np.ndarray]) -> np.ndarray:
        """The columns model `name` was trained on, in its order, from the per-service matrices."""
        return self._X(name, self._all_models()[name], mats)

    def _X(self, name: str, model: Any, mats: Mapping[str, np.ndarray]) -> np.ndarray:
        X = mats[model.feature_service]
        idx = self._take[name]
        return X if idx is None else X[:, idx]

    def _all_models(self) -> dict[str, Any]:
        return self._all

    @property
    def services(self) -> tuple[str, ...]:
        return self._services

    @property
    def model_versions(self) -> dict[str, str]:
        return dict(self._versions)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature any model uses (what /score_features accepts)."""
        return tuple(sorted({n for c in self._columns.values() for n in c}))

    def eligible(self, offers: Sequence[str] | None) -> tuple[str, ...]:
        if offers is None:
            return self.catalogue
        unknown = [o for o in offers if o not in self.catalogue]
        if unknown:
            raise RequestError(f"offers: {unknown} are not in the offer catalogue {list(self.catalogue)}")
        return tuple(dict.fromkeys(offers))

    def read(
        self, customer_ids: Sequence[str], now: pd.Timestamp
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Online features per service; cold = found in no service; age = oldest service's age."""
        if self._one_store is not None:
            mats_all, cold, age_all = self._one_store.read_all(self._services, customer_ids, now)
            return mats_all, cold, age_all
        n = len(customer_ids)
        mats: dict[str, np.ndarray] = {}
        found = np.zeros(n, dtype=bool)
        age = np.full(n, np.nan)
        for svc, (X, f, a) in self._read_services(customer_ids, now):
            mats[svc] = np.asarray(X, dtype=np.float64)
            f = np.asarray(f, dtype=bool)
            found |= f
            a = np.where(f, np.asarray(a, dtype=np.float64), np.nan)
            age = np.fmax(age, a)
        return mats, ~found, age

    def _read_services(
        self, customer_ids: Sequence[str], now: pd.Timestamp
    ) -> list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """Each service's (X, found, age); readers that share one store read it once for all their services.

        A reader with a `shared` attribute (features.online.OnlineStoreReader's per-service views) is
        answered by `shared.read_services`, which queries each feature view once however many
        services use it — the services overlap, so this is most of the read cost of a request.
        """
        out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        groups: dict[int, tuple[Any, list[str]]] = {}
        for svc in self._services:
            shared = getattr(self.readers[svc], "shared", None)
            if shared is None:
                out[svc] = self.readers[svc].read(customer_ids, now)
            else:
                groups.setdefault(id(shared), (shared, []))[1].append(svc)
        for shared, svcs in groups.values():
            out |= shared.read_services(svcs, customer_ids, now)
        return [(svc, out[svc]) for svc in self._services]

    def score_ids(
        self, customer_ids: Sequence[str], now: pd.Timestamp, offers: Sequence[str] | None = None
    ) -> ScoreBatch:
        eligible = self.eligible(offers)
        mats, cold, age = self.read(customer_ids, now)
        return self.score_matrices(list(customer_ids), mats, cold, age, eligible)

    def matrices_from_rows(self, rows: Sequence[Mapping[str, float | None]]) -> dict[str, np.ndarray]:
        """Feature dicts -> one matrix per service (missing/None -> NaN); unknown names are refused."""
        known = set(self.feature_names)
        for i, r in enumerate(rows):
            bad = sorted(set(r) - known)
            if bad:
                raise RequestError(f"rows[{i}].features: unknown features {bad[:10]}; known: {sorted(known)}")
        mats = {}
        for svc, cols in self._columns.items():
            X = np.full((len(rows), len(cols)), np.nan)
            for i, r in enumerate(rows):
                for name, v in r.items():
                    j = cols.get(name)
                    if j is not None and v is not None:
                        X[i, j] = v
            mats[svc] = X
        return mats

    def score_rows(
        self,
        rows: Sequence[Mapping[str, float | None]],
        customer_ids: Sequence[str | None] | None = None,
        offers: Sequence[str] | None = None,
    ) -> ScoreBatch:
        eligible = self.eligible(offers)
        mats = self.matrices_from_rows(rows)
        cold = np.array([not any(v is not None for v in r.values()) for r in rows], dtype=bool)
        ids: list[str | None] = list(customer_ids) if customer_ids is not None else [None] * len(rows)
        return self.score_matrices(ids, mats, cold, np.full(len(rows), np.nan), eligible)

    def score_matrices(
        self,
        customer_ids: Sequence[str | None],
        mats: Mapping[str, np.ndarray],
        cold: np.ndarray,
        age: np.ndarray,
        offers: tuple[str, ...],
        *,
        reasons: bool = True,
    ) -> ScoreBatch:
        """The one scoring function: every path (HTTP ids, HTTP rows, batch) ends here."""
        from serving.fastpredict import shared_predictions

        n = len(customer_ids)
        conv = np.zeros((n, len(offers)))
        marg = np.zeros((n, len(offers)))
        # one block: a booster asked twice for the same matrix (the offer model's two copies of its
        # conversion learner) predicts once; nothing below modifies the matrices
        with shared_predictions():
            pred = {
                name: np.asarray(m.predict(self._X(name, m, mats)), dtype=np.float64).reshape(n)
                for name, m in self.models.items()
            }
            if self.offer_model is not None and any(o != "none" for o in offers):
                est = self.offer_model.predict(self._X(OFFER_MODEL, self.offer_model, mats))
                for j, o in enumerate(offers):
                    if o in est:
                        c, m = est[o]
                        conv[:, j] = c
                        marg[:, j] = m
        expl: list[list[tuple[str, str, float | None, float]]]
        if not (reasons and self.reasons_k > 0):
            expl = [[]] * n  # one shared empty list: n fresh ones cost a third of a second per 100k rows
        else:
            expl = [[] for _ in range(n)]
            for name in self.explained:
                model = self.models[name]
                for i, row in enumerate(self.explainer(model, self._X(name, model, mats), self.reasons_k)):
                    expl[i].extend((name, f, v, c) for f, v, c in row)
        return ScoreBatch(
            customer_ids=list(customer_ids),
            churn=pred[CHURN],
            repurchase=pred[REPURCHASE],
            days_to_next=pred[DAYS],
            value=pred[VALUE],
            segment=self.segmenter(pred[CHURN], pred[VALUE]),
            offers=offers,
            conversion=conv,
            margin=marg,
            best_offer=greedy_best(marg, offers),
            reasons=expl,
            model_versions=self._versions,
            feature_age=np.asarray(age, dtype=np.float64),
            cold_start=np.asarray(cold, dtype=bool),
            matrices=mats,
        )
